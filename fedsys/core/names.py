"""Names that become file names: a site, a job, a client, a table.

A name a user or a peer chooses ends up in a path (``catalogs/<site>/tables.json``,
``clients/<name>.pem``, ``logs/<site>.log``). ``../../x`` or ``/etc/x`` would then
write outside the folder it belongs to, so every such name is checked once, where it
enters, to be one plain path component.
"""

from __future__ import annotations

import re

__all__ = ["MAX_NAME_LENGTH", "plain_name"]

MAX_NAME_LENGTH = 128
"""Longest name accepted (file systems allow 255 bytes per component)."""

_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def plain_name(name: object, what: str) -> str:
    """Return ``name`` if it is one plain path component, else raise naming ``what``.

    Plain: letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit
    (so never ``.``, ``..`` or a hidden file), at most :data:`MAX_NAME_LENGTH` long.

    Raises
    ------
    ValueError
        One line: which ``what`` (``"site name"``), the name, and what is allowed.
    """
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or _PLAIN.fullmatch(name) is None:
        shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
        raise ValueError(
            f"{what} {shown} is not a plain name: it names a file, so use letters, digits, "
            f"'.', '_' and '-' only, starting with a letter or digit "
            f"(at most {MAX_NAME_LENGTH} characters)"
        )
    return name

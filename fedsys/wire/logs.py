"""Structured logs for every network runtime: one JSON object per line.

A fleet's (or a federation's) logs can then be queried, not read. Each line has
``ts`` (Unix seconds), ``level``, ``logger``, ``msg`` and the record's extras (what
the caller passed as ``extra=``); a record with an exception adds ``error``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

__all__ = ["JsonFormatter", "setup_logging"]

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra}`` per record."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line."""
        row = {
            "ts": round(time.time(), 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        # Extras are the caller's fields; names with a leading underscore are what
        # other libraries' record factories add (Ray stamps ``_ray_timestamp_ns``).
        row.update({
            k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")
        })
        if record.exc_info:
            row["error"] = self.formatException(record.exc_info)
        return json.dumps(row, default=str)


def setup_logging(
    log_file: Path | None = None, level: int = logging.INFO, to_stderr: bool = True
) -> None:
    """Send fedsys's logs as JSON lines to stderr (unless not ``to_stderr``) and ``log_file``.

    Parameters
    ----------
    log_file
        Also append the lines to this file (its folder is created).
    level
        Lowest level logged.
    to_stderr
        Write the lines to stderr.
    """
    root = logging.getLogger("fedsys")
    root.setLevel(level)
    for old in root.handlers:
        old.close()
    root.handlers.clear()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)] if to_stderr else []
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    for handler in handlers:
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.propagate = False

"""Which keys of two configs differ: how a refused resume names what changed."""

from __future__ import annotations

from typing import Any

__all__ = ["changed_keys", "describe_changes"]

_MISSING = object()


def changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts, sorted.

    A key present on one side only counts as changed; sections are compared key by
    key, any other value as a whole.
    """
    changed: list[str] = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key, _MISSING), new.get(key, _MISSING)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key}")
    return changed


def describe_changes(old: dict[str, Any], new: dict[str, Any], limit: int = 5) -> str:
    """``"rounds: 10 there, 20 here; train.lr: ..."`` for the first ``limit`` changed keys."""
    keys = changed_keys(old, new)
    parts = [
        f"{key}: {_short(_lookup(old, key))} there, {_short(_lookup(new, key))} here"
        for key in keys[:limit]
    ]
    if len(keys) > limit:
        parts.append(f"and {len(keys) - limit} more")
    return "; ".join(parts)


def _lookup(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _short(value: Any, limit: int = 40) -> str:
    if value is _MISSING:
        return "unset"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""Atomic checkpoints of a simulated run, stored without arbitrary pickles.

A checkpoint is a tree of plain values (dicts, lists, tuples, numbers, strings,
tensors) saved with ``torch.save`` and read back with ``torch.load(weights_only=True)``,
which refuses anything else: opening a checkpoint cannot run code. The run's state
objects (weights, strategy and selector states, pending events, records) are frozen
dataclasses and numpy arrays; :func:`to_tree` encodes them as tagged dicts and
:func:`from_tree` rebuilds them, admitting only dataclasses defined inside ``fedsys``.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedsys.metrics.run_folder import CHECKPOINT_FILE as CHECKPOINT_NAME
from fedsys.metrics.writers import atomic_write_bytes

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, of another format, or does not fit the run."""


def to_tree(value: Any) -> Any:
    """Encode ``value`` as plain containers, numbers, strings and tensors.

    Raises
    ------
    TypeError
        For a value no rule covers (a checkpoint must never silently drop state).
    """
    if value is None or isinstance(value, bool | int | float | str | torch.Tensor):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError("object arrays cannot be checkpointed")
        return {"__ndarray__": torch.from_numpy(np.array(value, copy=True))}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        kind = type(value)
        fields = {f.name: to_tree(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"__dataclass__": f"{kind.__module__}:{kind.__qualname__}", "fields": fields}
    if isinstance(value, dict):
        return {"__dict__": [(to_tree(k), to_tree(v)) for k, v in value.items()]}
    if isinstance(value, tuple):
        return tuple(to_tree(v) for v in value)
    if isinstance(value, list):
        return [to_tree(v) for v in value]
    if isinstance(value, set | frozenset):
        return {"__set__": sorted(to_tree(v) for v in value)}
    raise TypeError(f"cannot checkpoint a {type(value).__name__}")


def from_tree(tree: Any) -> Any:
    """Inverse of :func:`to_tree`.

    Raises
    ------
    CheckpointError
        If a tagged dataclass is not a ``fedsys`` dataclass.
    """
    if isinstance(tree, tuple):
        return tuple(from_tree(v) for v in tree)
    if isinstance(tree, list):
        return [from_tree(v) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if "__ndarray__" in tree:
        return tree["__ndarray__"].numpy().copy()
    if "__set__" in tree:
        return {from_tree(v) for v in tree["__set__"]}
    if "__dict__" in tree:
        return {from_tree(k): from_tree(v) for k, v in tree["__dict__"]}
    if "__dataclass__" in tree:
        kind = _fedsys_dataclass(tree["__dataclass__"])
        return kind(**{name: from_tree(v) for name, v in tree["fields"].items()})
    raise CheckpointError(f"unknown checkpoint entry with keys {sorted(tree)}")


def _fedsys_dataclass(path: str) -> type:
    module_name, _, qualname = path.partition(":")
    if not (module_name == "fedsys" or module_name.startswith("fedsys.")):
        raise CheckpointError(f"checkpoint names {path!r}, which is not a fedsys type")
    kind: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        kind = getattr(kind, part, None)
    if not (isinstance(kind, type) and dataclasses.is_dataclass(kind)):
        raise CheckpointError(f"checkpoint names {path!r}, which is not a fedsys dataclass")
    return kind


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically (temp file, fsync, rename) as a versioned checkpoint."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT_VERSION, "state": to_tree(state)}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint file, or ``checkpoint.pt`` inside a run folder.

    Raises
    ------
    CheckpointError
        Naming the file, if it is missing, truncated, refused or of another format.
    """
    file = Path(path)
    if file.is_dir():
        file = file / CHECKPOINT_NAME
    if not file.is_file():
        raise CheckpointError(f"no checkpoint at {file}")
    try:
        raw = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several kinds for torn or foreign files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {file}: {first}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{file} is not a fedsys checkpoint of format {FORMAT_VERSION}")
    state = from_tree(raw["state"])
    if not isinstance(state, dict):
        raise CheckpointError(f"{file} holds no run state")
    return state

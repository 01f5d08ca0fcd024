"""Strategy and selector state to bytes and back, without pickle.

States are values made of dataclasses, tensors, NumPy arrays, numbers, strings and
containers (see ``Strategy.init_state`` / ``Selector.init_state``). They are written
as one ``.npz`` archive: arrays as arrays, the structure as JSON that names each
dataclass by import path. Only dataclasses defined inside ``fedsys`` are rebuilt, so
a tampered checkpoint cannot make the loader run arbitrary code.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
from typing import Any

import numpy as np
import torch

_META = "__structure__"
_ALLOWED_PREFIX = "fedsys."


class StateFileError(ValueError):
    """A state archive is malformed or names a type it may not rebuild."""


def dumps(value: Any) -> bytes:
    """Serialize a state value to ``.npz`` bytes."""
    arrays: dict[str, np.ndarray] = {}
    structure = _encode(value, arrays)
    arrays[_META] = np.frombuffer(json.dumps(structure).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def loads(data: bytes) -> Any:
    """Rebuild a state value from :func:`dumps` output.

    Raises
    ------
    StateFileError
        If the archive is malformed or names a type outside fedsys.
    """
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        structure = json.loads(arrays.pop(_META).tobytes().decode())
    except (ValueError, KeyError, OSError) as exc:
        raise StateFileError(f"state archive is unreadable: {exc}") from None
    return _decode(structure, arrays)


def _encode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return {"float": repr(value)}
    if isinstance(value, torch.Tensor):
        key = f"a{len(arrays)}"
        arrays[key] = value.detach().cpu().numpy()
        return {"tensor": key, "dtype": str(value.dtype).removeprefix("torch.")}
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError("object arrays cannot be stored in a state file")
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {"ndarray": key}
    if isinstance(value, np.generic):
        return _encode(value.item(), arrays)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        fields = {
            f.name: _encode(getattr(value, f.name), arrays) for f in dataclasses.fields(value)
        }
        return {"dataclass": f"{cls.__module__}:{cls.__qualname__}", "fields": fields}
    if isinstance(value, tuple | list):
        return {
            "tuple" if isinstance(value, tuple) else "list": [_encode(v, arrays) for v in value]
        }
    if isinstance(value, dict):
        return {"dict": [[_encode(k, arrays), _encode(v, arrays)] for k, v in value.items()]}
    if isinstance(value, set | frozenset):
        return {"set": [_encode(v, arrays) for v in sorted(value)]}
    raise TypeError(f"cannot store a {type(value).__name__} in a state file")


def _decode(node: Any, arrays: dict[str, np.ndarray]) -> Any:
    if node is None or isinstance(node, bool | int | str):
        return node
    if not isinstance(node, dict) or len(node) not in (1, 2):
        raise StateFileError(f"unexpected node {str(node)[:80]!r} in state archive")
    if "float" in node:
        return float(node["float"])
    if "tensor" in node:
        array = _array(arrays, node["tensor"])
        return torch.from_numpy(array.copy()).to(getattr(torch, node["dtype"]))
    if "ndarray" in node:
        return _array(arrays, node["ndarray"]).copy()
    if "dataclass" in node:
        cls = _dataclass_type(node["dataclass"])
        values = {k: _decode(v, arrays) for k, v in node["fields"].items()}
        instance = object.__new__(cls)
        for name, value in values.items():
            object.__setattr__(instance, name, value)
        return instance
    if "tuple" in node:
        return tuple(_decode(v, arrays) for v in node["tuple"])
    if "list" in node:
        return [_decode(v, arrays) for v in node["list"]]
    if "dict" in node:
        return {_decode(k, arrays): _decode(v, arrays) for k, v in node["dict"]}
    if "set" in node:
        return {_decode(v, arrays) for v in node["set"]}
    raise StateFileError(f"unknown node kind {sorted(node)} in state archive")


def _array(arrays: dict[str, np.ndarray], key: str) -> np.ndarray:
    if key not in arrays:
        raise StateFileError(f"state archive lacks array {key!r}")
    return arrays[key]


def _dataclass_type(path: str) -> type:
    module_name, _, qualname = path.partition(":")
    if not module_name.startswith(_ALLOWED_PREFIX):
        raise StateFileError(f"state archive names {path!r}, outside fedsys: refused")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        raise StateFileError(f"state archive names unknown type {path!r}") from None
    if not (isinstance(obj, type) and dataclasses.is_dataclass(obj)):
        raise StateFileError(f"{path!r} is not a dataclass")
    return obj

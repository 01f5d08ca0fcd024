"""``ModelWeights`` on the wire: raw little-endian bytes plus a ``Layout``, never pickle."""

from __future__ import annotations

import numpy as np
import torch

from fedsys.core.weights import ModelWeights, TensorSpec
from fedsys.wire.protos import common_pb2

WIRE_DTYPE = "float32"
"""fedsys weights are float32 (see ``ModelWeights``); the layout says so explicitly."""


def layout_of(weights: ModelWeights) -> common_pb2.Layout:
    """The tensor names, shapes and dtype of ``weights``."""
    specs = [common_pb2.TensorSpec(name=s.name, shape=list(s.shape)) for s in weights.specs]
    return common_pb2.Layout(specs=specs, dtype=WIRE_DTYPE)


def specs_of(layout: common_pb2.Layout) -> tuple[TensorSpec, ...]:
    """Tensor specs from a wire layout."""
    return tuple(TensorSpec(s.name, tuple(int(d) for d in s.shape)) for s in layout.specs)


def weights_to_bytes(weights: ModelWeights) -> bytes:
    """The flat vector's raw little-endian bytes."""
    array = weights.flat.detach().cpu().contiguous().numpy()
    return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def weights_from_bytes(data: bytes, layout: common_pb2.Layout) -> ModelWeights:
    """Rebuild weights from raw bytes and their layout.

    Raises
    ------
    ValueError
        If the dtype is unknown or the byte count does not match the layout.
    """
    if layout.dtype != WIRE_DTYPE:
        raise ValueError(f"unsupported dtype {layout.dtype!r} on the wire (expected float32)")
    specs = specs_of(layout)
    count = sum(spec.numel for spec in specs)
    if len(data) != count * 4:
        raise ValueError(f"{len(data)} bytes do not hold {count} float32 values")
    array = np.frombuffer(data, dtype="<f4").astype(np.float32)
    return ModelWeights(flat=torch.from_numpy(array), specs=specs)

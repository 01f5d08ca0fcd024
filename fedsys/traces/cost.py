"""How much costlier a model is to train than the reference model of the device traces.

FedScale's compute trace (``client_device_capacity``) holds each device's
*inference* latency in ms per sample of **MobileNetV2**: the FedScale maintainers
state that "the current compute trace is from mobile_v2" and that another model's
time should scale by ``FLOPs_of_new_model / FLOPs_of_mobile_v2``
(SymbioticLab/FedScale issue #136). fedsys follows that rule: a device's seconds
per training sample for a model are ``compute_s_per_sample × cost_ratio``.

The reference numbers are torchvision's MobileNetV2 (1.0 width, 224×224 input,
1000 classes): 3,504,872 parameters and 0.30 G multiply-accumulates (MACs) per
sample (Sandler et al., CVPR 2018: 300 M multiply-adds). Most counters (thop,
fvcore, torchvision's "GFLOPS") report MACs; pass MACs, not 2 × MACs.

Two ways to measure a model's cost:

* ``macs`` (or ``input_shape``, which counts MACs of Linear and Conv layers with
  forward hooks): the faithful measure of compute;
* parameter count: the fallback when no input shape is known. It is a crude proxy
  that overrates dense models (an MLP does ~1 MAC per parameter per sample,
  MobileNetV2 ~86).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "MOBILENET_V2_BYTES",
    "MOBILENET_V2_MACS",
    "MOBILENET_V2_PARAMS",
    "count_macs",
    "model_cost_ratio",
    "transfer_cost_ratio",
]

MOBILENET_V2_PARAMS = 3_504_872
"""Parameters of torchvision's ``mobilenet_v2`` (1000 classes)."""

MOBILENET_V2_MACS = 300e6
"""Multiply-accumulates per 224×224 sample of MobileNetV2 (Sandler et al., 2018)."""

MOBILENET_V2_BYTES = 4 * MOBILENET_V2_PARAMS
"""Bytes of MobileNetV2's float32 weights (about 14 MB), the model the traces time."""


def transfer_cost_ratio(model_bytes: int, reference_bytes: int = MOBILENET_V2_BYTES) -> float:
    """Transfer-time multiplier that makes ``model_bytes`` travel as ``reference_bytes`` would.

    A small proxy model (an MLP of tens of kB) crosses a traced phone link in
    milliseconds, so communication would vanish from the round time while the
    compute trace, timed on MobileNetV2, stays in seconds (``model_cost_ratio 1``).
    Charging transfers at this ratio keeps both halves of the round on the reference
    model, as FedScale's numbers are; compressed uploads stay proportionally smaller.

    Parameters
    ----------
    model_bytes
        Serialized bytes of the model actually trained.
    reference_bytes
        Bytes to charge it as (MobileNetV2's float32 weights by default).

    Raises
    ------
    ValueError
        If either size is not positive.
    """
    if not model_bytes > 0 or not reference_bytes > 0:
        raise ValueError(
            f"model_bytes and reference_bytes must be > 0, got {model_bytes}, {reference_bytes}"
        )
    return reference_bytes / model_bytes


def model_cost_ratio(
    module: Any = None,
    *,
    macs: float | None = None,
    input_shape: Sequence[int] | None = None,
    reference_params: int = MOBILENET_V2_PARAMS,
    reference_macs: float = MOBILENET_V2_MACS,
) -> float:
    """Cost of training ``module`` relative to the trace's reference model.

    Parameters
    ----------
    module
        A ``torch.nn.Module`` (anything with ``parameters()``); may be omitted when
        ``macs`` is given.
    macs
        Multiply-accumulates per sample of the model, if known.
    input_shape
        Shape of one sample (no batch dimension): MACs are counted with
        :func:`count_macs`.
    reference_params, reference_macs
        Cost of the reference model (MobileNetV2 by default).

    Returns
    -------
    float
        ``macs / reference_macs`` when MACs are known or countable, else
        ``num_params / reference_params``.

    Raises
    ------
    ValueError
        With neither a module nor ``macs``, or a non-positive cost.
    """
    if macs is None and module is not None and input_shape is not None:
        macs = count_macs(module, input_shape)
    if macs is not None:
        if not macs > 0:
            raise ValueError(f"macs must be > 0, got {macs}")
        return float(macs) / reference_macs
    if module is None:
        raise ValueError("give a module or its macs")
    num_params = sum(int(p.numel()) for p in module.parameters())
    if num_params == 0:
        raise ValueError("the module has no parameters: give macs instead")
    return num_params / reference_params


def count_macs(module: Any, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass on one sample.

    Counts ``Linear`` and ``Conv1d/2d/3d`` layers (the bulk of the work of the
    models fedsys trains); activations, norms and pooling are ignored.

    Parameters
    ----------
    module
        A ``torch.nn.Module``.
    input_shape
        Shape of one sample, without the batch dimension.

    Returns
    -------
    int
        MACs per sample.
    """
    import torch
    from torch import nn

    total = 0

    def linear_hook(layer: nn.Linear, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        total += int(output.numel()) * layer.in_features

    def conv_hook(layer: nn.modules.conv._ConvNd, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        kernel = int(torch.tensor(layer.kernel_size).prod())
        total += int(output.numel()) * (layer.in_channels // layer.groups) * kernel

    handles = []
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            handles.append(layer.register_forward_hook(linear_hook))
        elif isinstance(layer, nn.modules.conv._ConvNd):
            handles.append(layer.register_forward_hook(conv_hook))
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            module(torch.zeros((1, *input_shape)))
    finally:
        module.train(was_training)
        for handle in handles:
            handle.remove()
    return total

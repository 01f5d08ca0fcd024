"""Common layers evaluated for many clients at once, each client with its own weights.

The vectorized backend's fast path. A model built only of the layers below (nested
``nn.Sequential`` of linear, convolution, layer-norm, pooling, activation, reshaping
and dropout layers: the shape of most models a federated simulation trains) runs every
client's forward pass on ``[clients, batch, ...]`` tensors as batched matrix products
and grouped convolutions, and plain autograd then gives every client's gradient at once.

``torch.func``'s ``vmap`` over ``grad`` batches any model, but pays for it: each call
re-dispatches every operation through batching rules, and its first call in a process
imports ``torch._dynamo`` and SymPy (``grad`` and the batched cross entropy need them),
about 2 s on a 2-core machine: more than a whole simulation of 100 clients takes.
Models this module does not know (any other layer, a custom ``forward``, hooks,
buffers, non-float32 weights) keep the ``vmap`` path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn
from torch.nn import functional as F

BatchedForward = Callable[[Mapping[str, torch.Tensor], torch.Tensor], torch.Tensor]
"""``(state entries as [clients, *shape], x as [clients, batch, ...]) -> outputs``."""

LayerFn = Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]

SAMPLE_WISE = (
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Softplus,
    nn.Softsign,
    nn.Softmax,
    nn.LogSoftmax,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
"""Layers without weights that treat each sample on its own (dim 0 is the batch):
they run on the clients' batches merged into one."""

CONVOLUTIONS = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}


def layered_forward(model: nn.Module) -> BatchedForward | None:
    """``model``'s forward pass for many clients at once; ``None`` when it has a layer
    (or hook, buffer, weight shared between layers, non-float32 weight) this module
    does not know."""
    if any(True for _ in model.buffers()):
        return None
    if len(list(model.named_parameters(remove_duplicate=False))) != len(list(model.parameters())):
        return None  # tied weights: each name would be stepped on its own
    if any(p.dtype != torch.float32 for p in model.parameters()):
        return None
    layers = _compile(model, "")
    if layers is None:
        return None

    def forward(entries: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        for prefix, names, layer in layers:
            x = layer({name: entries[prefix + name] for name in names}, x)
        return x

    return forward


def _compile(module: nn.Module, prefix: str) -> list[tuple[str, tuple[str, ...], LayerFn]] | None:
    """The leaf layers of ``module`` in call order, each with its weights' names."""
    if module._forward_hooks or module._forward_pre_hooks or module._backward_hooks:
        return None
    if type(module) is nn.Sequential:
        layers: list[tuple[str, tuple[str, ...], LayerFn]] = []
        for name, child in module.named_children():
            inner = _compile(child, f"{prefix}{name}.")
            if inner is None:
                return None
            layers += inner
        return layers
    layer = _leaf(module)
    if layer is None:
        return None
    names = tuple(name for name, _ in module.named_parameters(recurse=False))
    return [(prefix, names, layer)]


def _leaf(module: nn.Module) -> LayerFn | None:
    """The batched version of one layer, or ``None``."""
    kind = type(module)
    if kind in SAMPLE_WISE:
        if getattr(module, "return_indices", False):
            return None
        if any(getattr(module, attr, None) == 0 for attr in ("dim", "start_dim")):
            return None  # acts across the batch dimension
        return lambda _, x: _sample_wise(module, x)
    if kind is nn.Linear:
        return _linear
    if kind in CONVOLUTIONS and module.padding_mode == "zeros":
        return lambda weights, x: _convolution(module, weights, x)
    if kind is nn.LayerNorm:
        return lambda weights, x: _layer_norm(module, weights, x)
    return None


def _sample_wise(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    clients, batch = x.shape[:2]
    return module(x.flatten(0, 1)).unflatten(0, (clients, batch))


def _linear(weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``weight @ x^T``, so that the weight's gradient comes out in its own layout.

    (``x @ weight^T`` gives it transposed, and every use of it against the weight's
    block, the in-place step included, is then a strided pass: copied into the rows it
    cost as long as the backward pass itself.)
    """
    weight = weights["weight"]  # [clients, out, in]
    columns = x.reshape(x.shape[0], -1, x.shape[-1]).transpose(1, 2)
    bias = weights.get("bias")
    if bias is None:
        out = torch.bmm(weight, columns)
    else:
        out = torch.baddbmm(bias.unsqueeze(2), weight, columns)
    return out.transpose(1, 2).reshape(*x.shape[:-1], weight.shape[1])


def _convolution(
    module: nn.Module, weights: dict[str, torch.Tensor], x: torch.Tensor
) -> torch.Tensor:
    """Clients as groups of one grouped convolution over the batch."""
    clients, batch = x.shape[:2]
    spatial = len(module.kernel_size)
    if x.dim() != 3 + spatial:
        raise ValueError(
            f"{type(module).__name__} needs batched input, got shape {tuple(x.shape[1:])}"
        )
    merged = x.transpose(0, 1).reshape(batch, clients * module.in_channels, *x.shape[3:])
    weight = weights["weight"].flatten(0, 1)
    bias = weights.get("bias")
    out = CONVOLUTIONS[type(module)](
        merged,
        weight,
        None if bias is None else bias.flatten(),
        module.stride,
        module.padding,
        module.dilation,
        module.groups * clients,
    )
    return out.unflatten(1, (clients, module.out_channels)).transpose(0, 1)


def _layer_norm(
    module: nn.Module, weights: dict[str, torch.Tensor], x: torch.Tensor
) -> torch.Tensor:
    shape = tuple(module.normalized_shape)
    out = F.layer_norm(x, shape, None, None, module.eps)
    broadcast = (x.shape[0],) + (1,) * (x.dim() - 1 - len(shape)) + shape
    if "weight" in weights:
        out = out * weights["weight"].view(broadcast)
    if "bias" in weights:
        out = out + weights["bias"].view(broadcast)
    return out

"""Batched common layers give each client the output its own model would."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from fedsys.sim.backends.layers import layered_forward


def _stacked_states(model: nn.Module, clients: int) -> list[dict[str, torch.Tensor]]:
    """Distinct weights per client: the model's own, perturbed by client."""
    generator = torch.Generator().manual_seed(1)
    return [
        {
            name: value + 0.1 * c * torch.randn(value.shape, generator=generator)
            for name, value in model.state_dict().items()
        }
        for c in range(clients)
    ]


def _models() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    torch.manual_seed(0)
    return {
        "mlp": (nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.Tanh(), nn.Linear(7, 3)), (12,)),
        "linear-no-bias-3d": (
            nn.Sequential(nn.Linear(5, 4, bias=False), nn.GELU(), nn.Flatten(), nn.Linear(12, 2)),
            (3, 5),
        ),
        "cnn2d": (
            nn.Sequential(
                nn.Unflatten(1, (2, 6, 6)),
                nn.Conv2d(2, 4, kernel_size=3, padding=1, stride=2),
                nn.ReLU(),
                nn.Conv2d(4, 4, kernel_size=2, groups=2, dilation=1),
                nn.AvgPool2d(2),
                nn.Dropout(p=0.0),
                nn.Flatten(),
                nn.Sequential(nn.Linear(4, 3), nn.LogSoftmax(dim=1)),
            ),
            (72,),
        ),
        "cnn1d-layernorm": (
            nn.Sequential(
                nn.Unflatten(1, (1, 10)),
                nn.Conv1d(1, 3, kernel_size=3, padding="same", bias=False),
                nn.LayerNorm(10),
                nn.MaxPool1d(2),
                nn.Flatten(),
                nn.Linear(15, 2),
            ),
            (10,),
        ),
    }


@pytest.mark.parametrize("name", list(_models()))
def test_each_client_gets_its_own_models_output(name: str) -> None:
    model, sample_shape = _models()[name]
    clients, batch = 3, 5
    states = _stacked_states(model, clients)
    x = torch.randn(clients, batch, *sample_shape)

    forward = layered_forward(model)
    assert forward is not None
    stacked = {name: torch.stack([s[name] for s in states]) for name in states[0]}
    out = forward(stacked, x)

    for c in range(clients):
        expected = functional_call(model, states[c], (x[c],))
        torch.testing.assert_close(out[c], expected, rtol=1e-5, atol=1e-5)


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layer(x)


def _hooked() -> nn.Module:
    model = nn.Sequential(nn.Linear(4, 2))
    model[0].register_forward_hook(lambda module, args, out: out * 2)
    return model


def _tied() -> nn.Module:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    model[2].weight = model[0].weight
    return model


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(_tied(), id="tied-weights"),
        pytest.param(_Residual(), id="custom-forward"),
        pytest.param(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), id="buffers"),
        pytest.param(nn.Sequential(nn.Linear(4, 4).double()), id="float64"),
        pytest.param(_hooked(), id="hook"),
        pytest.param(nn.Sequential(nn.Linear(4, 4), nn.Softmax(dim=0)), id="across-batch"),
        pytest.param(nn.Sequential(nn.MaxPool1d(2, return_indices=True)), id="pool-indices"),
        pytest.param(nn.Sequential(nn.Conv1d(1, 1, 3, padding_mode="circular")), id="circular"),
    ],
)
def test_models_it_does_not_know_are_left_to_vmap(model: nn.Module) -> None:
    assert layered_forward(model) is None

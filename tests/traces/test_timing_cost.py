"""Round time = download + compute + upload; compute scales with the model's cost."""

import numpy as np
import pytest
from torch import nn

from fedsys.traces import (
    MOBILENET_V2_BYTES,
    MOBILENET_V2_MACS,
    MOBILENET_V2_PARAMS,
    DeviceFleet,
    client_round_time,
    count_macs,
    model_cost_ratio,
    transfer_cost_ratio,
)


@pytest.fixture
def fleet() -> DeviceFleet:
    return DeviceFleet.always_available(
        3,
        compute_s_per_sample=np.array([0.1, 0.2, 0.4]),
        down_bytes_per_s=np.array([1e6, 2e6, 4e6]),
        up_bytes_per_s=np.array([5e5, 1e6, 1e6]),
    )


def test_round_time_components(fleet: DeviceFleet) -> None:
    down, compute, up = client_round_time(fleet, [2, 0], [10, 20], 4e6, 1e6, cost_ratio=0.5)
    np.testing.assert_allclose(down, [1.0, 4.0])  # 4 MB at 4 MB/s and 1 MB/s
    np.testing.assert_allclose(compute, [2.0, 1.0])  # 10 x 0.4 x 0.5, 20 x 0.1 x 0.5
    np.testing.assert_allclose(up, [1.0, 2.0])
    np.testing.assert_allclose(down + compute + up, [4.0, 7.0])


def test_bigger_model_is_slower_on_the_same_device(fleet: DeviceFleet) -> None:
    _, small, _ = client_round_time(fleet, [1], 50, 0, 0, cost_ratio=0.1)
    _, large, _ = client_round_time(fleet, [1], 50, 0, 0, cost_ratio=2.0)
    np.testing.assert_allclose(large / small, 20.0)
    scaled = fleet.scaled_compute(2.0)
    _, via_fleet, _ = client_round_time(scaled, [1], 50, 0, 0)
    np.testing.assert_allclose(via_fleet, large)


def test_cost_ratio_from_parameters_and_macs() -> None:
    model = nn.Linear(10, 4)  # 44 parameters, 40 MACs per sample
    assert model_cost_ratio(model) == pytest.approx(44 / MOBILENET_V2_PARAMS)
    assert count_macs(model, (10,)) == 40
    assert model_cost_ratio(model, input_shape=(10,)) == pytest.approx(40 / MOBILENET_V2_MACS)
    assert model_cost_ratio(macs=MOBILENET_V2_MACS) == 1.0
    wide = nn.Linear(10, 40)
    assert model_cost_ratio(wide) > model_cost_ratio(model)


def test_count_macs_of_a_conv_net() -> None:
    model = nn.Sequential(nn.Conv1d(1, 4, kernel_size=3), nn.Flatten(), nn.Linear(4 * 8, 2))
    # conv: 4 x 8 outputs x (1 x 3) ; linear: 2 x 32
    assert count_macs(model, (1, 10)) == 4 * 8 * 3 + 2 * 32
    assert model.training  # the training flag is restored


def test_cost_ratio_needs_something_to_measure() -> None:
    with pytest.raises(ValueError):
        model_cost_ratio()
    with pytest.raises(ValueError):
        DeviceFleet.always_available(1).scaled_compute(0.0)


def test_transfers_charged_as_the_reference_model(fleet: DeviceFleet) -> None:
    ratio = transfer_cost_ratio(1_000)
    assert ratio == pytest.approx(MOBILENET_V2_BYTES / 1_000)
    assert MOBILENET_V2_BYTES == 4 * MOBILENET_V2_PARAMS
    scaled = fleet.scaled_transfers(ratio)

    down, compute, up = client_round_time(scaled, [0, 2], 10, 1_000, 250)

    # 1 kB down now takes what MobileNetV2's 14 MB takes on the original link; the
    # 4x smaller upload stays 4x smaller; compute is untouched.
    np.testing.assert_allclose(down, [MOBILENET_V2_BYTES / 1e6, MOBILENET_V2_BYTES / 4e6])
    np.testing.assert_allclose(up, [MOBILENET_V2_BYTES / 4 / 5e5, MOBILENET_V2_BYTES / 4 / 1e6])
    np.testing.assert_allclose(compute, [1.0, 4.0])
    np.testing.assert_allclose(scaled.compute_s_per_sample, fleet.compute_s_per_sample)


def test_transfer_ratio_rejects_non_positive_sizes() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        transfer_cost_ratio(0)
    with pytest.raises(ValueError, match="transfer_cost_ratio"):
        DeviceFleet.always_available(1).scaled_transfers(-1.0)

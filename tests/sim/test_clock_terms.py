"""The virtual clock's calibrated server terms and the devices' time scale."""

from __future__ import annotations

import numpy as np
import pytest

from fedsys.config.schema import RunConfig
from fedsys.sim.assemble import build_simulator
from fedsys.traces import generate_fleet

BASE = {
    "rounds": 2,
    "clients_per_round": 4,
    "dataset": {"name": "digits", "num_clients": 8},
    "train": {"local_steps": 1},
    "devices": {"source": "uniform", "model_cost_ratio": 1.0},
    "round": {"mode": "sync", "overcommit": 1.0},
    "eval": {"every": 2},
}


def _run(**sections: dict) -> list:
    data = {**BASE, **{k: {**BASE.get(k, {}), **v} for k, v in sections.items()}}
    return list(build_simulator(RunConfig.model_validate(data)).run().records)


@pytest.fixture(scope="module")
def plain() -> list:
    return _run()


def test_server_terms_lengthen_every_round_by_the_calibrated_time(plain) -> None:
    charged = _run(clock={"server_round_s": 7.0, "server_update_s": 0.5})

    for before, after in zip(plain, charged, strict=True):
        assert after.participants == before.participants == 4
        assert after.duration_s == pytest.approx(before.duration_s + 7.0 + 0.5 * 4)
    assert charged[1].start_s == pytest.approx(charged[0].end_s)
    assert charged[-1].end_s == pytest.approx(plain[-1].end_s + 2 * 9.0)


def test_time_scale_shrinks_round_times_by_the_factor(plain) -> None:
    fast = _run(devices={"time_scale": 0.01})

    np.testing.assert_allclose(
        [r.duration_s for r in fast], [0.01 * r.duration_s for r in plain], rtol=1e-9
    )


def test_scaled_fleet_scales_every_device_time() -> None:
    fleet = generate_fleet(20, seed=1)

    fast = fleet.scaled_time(0.1)

    np.testing.assert_allclose(fast.compute_s_per_sample, 0.1 * fleet.compute_s_per_sample)
    np.testing.assert_allclose(fast.down_bytes_per_s, 10 * fleet.down_bytes_per_s)
    np.testing.assert_allclose(fast.avail_ends, 0.1 * fleet.avail_ends)
    for t in (0.0, 3600.0, 50_000.0):
        np.testing.assert_array_equal(fast.available_clients(0.1 * t), fleet.available_clients(t))
    with pytest.raises(ValueError, match="time_scale must be a positive number"):
        fleet.scaled_time(0.0)

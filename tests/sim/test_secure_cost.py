"""Secure aggregation on the virtual clock: the measured protocol cost is charged."""

from __future__ import annotations

import numpy as np

from fedsys.config.schema import RunConfig
from fedsys.parts.builders import secure_cost_model
from fedsys.secure.cost import MEASURED, SecureCostModel
from fedsys.sim.assemble import build_simulator
from fedsys.sim.rounds.sync import SyncRounds
from fedsys.traces.fleet import DeviceFleet

from .federation import make_simulator


def _fleet(n: int = 6) -> DeviceFleet:
    return DeviceFleet.always_available(
        n, compute_s_per_sample=1e-3, down_bytes_per_s=1e4, up_bytes_per_s=1e3
    )


def test_a_secure_round_takes_exactly_the_modelled_extra_time_and_bytes() -> None:
    plain = make_simulator(_fleet(), SyncRounds(overcommit=1.0), rounds=2)
    secure = make_simulator(_fleet(), SyncRounds(overcommit=1.0), rounds=2)
    model = SecureCostModel(degree=2, round_trip_s=0.1)
    secure.secure_cost = model

    plain_rounds = plain.run().records
    secure_rounds = secure.run().records

    cost = model.round_cost(len(range(plain_rounds[0].selected)), 10, 10 * 4)
    extra_s = (
        cost.extra_bytes_down / 1e4
        + cost.client_compute_s
        + cost.extra_bytes_up / 1e3
        + 3 * 0.1
        + cost.server_compute_s
    )
    for p, s in zip(plain_rounds, secure_rounds, strict=True):
        np.testing.assert_allclose(s.duration_s - p.duration_s, extra_s, rtol=1e-9)
        assert s.bytes_up - p.bytes_up == cost.extra_bytes_up * s.participants
        assert s.accuracy == p.accuracy  # the sum (and so the model) is the same


def test_cost_grows_with_the_model_and_all_pairs_costs_more_than_sparse() -> None:
    sparse = SecureCostModel()
    dense = SecureCostModel(all_pairs=True)

    small = sparse.round_cost(100, 100_000, 400_000)
    big = sparse.round_cost(100, 1_000_000, 4_000_000)
    everyone = dense.round_cost(100, 1_000_000, 4_000_000)

    assert sparse.neighbours(100) == 20 and dense.neighbours(100) == 99
    per_value_s = 21 * MEASURED.mask_s_per_value + MEASURED.quantize_s_per_value
    growth_s = big.client_compute_s - small.client_compute_s
    np.testing.assert_allclose(growth_s, 900_000 * per_value_s, rtol=1e-9)
    assert everyone.client_compute_s > 1.5 * big.client_compute_s
    assert everyone.server_compute_s > big.server_compute_s
    masks_s = 21 * 1_000_001 * MEASURED.mask_s_per_value  # self-mask + 20 pairwise masks
    assert masks_s < big.client_compute_s < masks_s + 1_000_001 * 1e-6
    assert big.extra_bytes_up == 72 + 20 * 170 + 4 * 1_000_001 + 21 * 72 - 4_000_000


def test_the_deploy_key_turns_the_charge_on_for_fedsys_run() -> None:
    base = {"rounds": 1, "clients_per_round": 4, "dataset": {"num_clients": 8}}
    off = RunConfig.model_validate(base)
    on = RunConfig.model_validate(
        {**base, "deploy": {"secure_aggregation": "secagg", "secure_bits": 40}}
    )

    assert secure_cost_model(off) is None
    model = secure_cost_model(on)
    assert model is not None and model.all_pairs and model.bits == 40
    assert build_simulator(on).secure_cost == model

"""Stragglers' updates aggregated rounds late, weighted by the configured staleness curve."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pytest
import torch

from fedsys.aggregation.fedavg import FedAvg
from fedsys.config.rounds import SyncRounds as SyncConfig
from fedsys.core.update import ClientUpdate
from fedsys.core.weights import ModelWeights
from fedsys.sim.engine import Engine, EngineParts
from fedsys.sim.rounds.late import LatePolicy
from fedsys.sim.rounds.setup import build_round_based, late_policy
from fedsys.sim.rounds.sync import SyncRounds
from fedsys.traces.fleet import DeviceFleet
from tests.sim.federation import make_simulator


@pytest.mark.parametrize(
    ("curve", "expected"),
    [
        ("off", lambda s: 0.0),
        ("constant", lambda s: 1.0),
        ("polynomial", lambda s: (1.0 + s) ** -0.7),
        ("exponential", lambda s: math.exp(-0.7 * s)),
        ("hinge", lambda s: 1.0 if s <= 2 else 1.0 / (1.0 + 0.7 * (s - 2))),
    ],
)
def test_stale_update_weights_follow_the_configured_curve(curve, expected) -> None:
    config = SyncConfig(
        late_updates={"curve": curve, "exponent": 0.7, "hinge_after": 2, "max_staleness": 6}
    )
    policy = late_policy(config)
    got = [policy.weight(s) for s in range(10)]
    want = [expected(s) if s <= 6 else 0.0 for s in range(10)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert build_round_based(config, "selector").late == policy


def test_late_updates_are_off_by_default() -> None:
    assert not late_policy(SyncConfig()).enabled
    assert not SyncRounds().late.enabled
    with pytest.raises(ValueError, match="curve"):
        LatePolicy(curve="linear")


class _Recording(FedAvg):
    """FedAvg that keeps every update it aggregated, per round."""

    def __init__(self) -> None:
        super().__init__()
        self.rounds: list[list[ClientUpdate]] = []

    def aggregate(
        self, weights: ModelWeights, updates: Iterable[ClientUpdate], state: None
    ) -> tuple[ModelWeights, None]:
        seen = list(updates)
        self.rounds.append(seen)
        return super().aggregate(weights, iter(seen), state)


def _run(late: LatePolicy, rounds: int = 3, devices: int = 5):
    """Device i needs (i + 1) s per sample; 3 picked, the round closes at the 2nd arrival."""
    fleet = DeviceFleet.always_available(
        devices, compute_s_per_sample=np.arange(1, devices + 1, dtype=float), down_bytes_per_s=1e9
    )
    simulator = make_simulator(fleet, SyncRounds(overcommit=1.5), clients_per_round=2)
    strategy = _Recording()
    parts = EngineParts(
        dataset=simulator.dataset,
        model=simulator.model,
        fleet=fleet,
        selector=simulator.selector,
        strategy=strategy,
        trainer=simulator.trainer,
        seed=0,
    )
    engine = Engine(parts)
    starts = [engine.weights]
    records = []
    for record in SyncRounds(overcommit=1.5, late=late).run(engine, rounds, 2):
        records.append(record)
        starts.append(engine.weights)
    return records, strategy.rounds, starts, simulator


def test_a_straggler_update_joins_a_later_round_scaled_by_its_weight() -> None:
    const_records, const_updates, starts, simulator = _run(LatePolicy(curve="constant"))
    expo_records, expo_updates, _, _ = _run(LatePolicy(curve="exponential", exponent=1.5))
    off_records, off_updates, _, _ = _run(LatePolicy())
    # Without late updates every round aggregates exactly K = 2.
    assert [len(u) for u in off_updates] == [2, 2, 2]
    assert all("late" not in r.extra for r in off_records)
    # With them, round 0's straggler arrives during round 1 and is aggregated there.
    late = const_records[1].extra["late"]
    assert late and all(staleness == 1 for _, staleness in late)
    assert const_records[0].stragglers == 1
    assert late[0][0] not in const_records[0].extra["clients"]
    assert expo_records[1].extra["late"] == late
    assert const_records[1].participants == 2 + len(late)
    late_const = const_updates[1][2:]
    late_expo = expo_updates[1][2:]
    assert [u.client_id for u in late_const] == [c for c, _ in late]
    for plain, scaled in zip(late_const, late_expo, strict=True):
        torch.testing.assert_close(scaled.delta.flat, math.exp(-1.5) * plain.delta.flat)
    # The late update trained from the weights of the round it was picked for.
    client = late[0][0]
    features, labels = simulator.dataset.client_data(client)
    candidates = [
        simulator.trainer.train(
            simulator.model, starts[0], features, labels, seed=[0, 0, client, serial]
        ).delta.flat
        for serial in range(3)
    ]
    assert any(torch.allclose(c, late_const[0].delta.flat) for c in candidates)


def test_a_straggler_stays_busy_until_its_update_is_used() -> None:
    # Three devices: the slowest straggles in round 0 and is still training in round 1.
    late_records, _, _, _ = _run(LatePolicy(curve="constant"), rounds=2, devices=3)
    off_records, _, _, _ = _run(LatePolicy(), rounds=2, devices=3)
    assert off_records[1].selected == 3
    assert late_records[1].selected == 2
    assert late_records[1].extra["late"] == [[2, 1]]

"""The simulator feeds the availability trace to an availability-aware selector."""

from __future__ import annotations

import numpy as np

from fedsys.selection.availability import AvailabilityAwareSelector
from fedsys.selection.random import RandomSelector
from fedsys.sim.engine import Engine, EngineParts
from fedsys.sim.rounds.sync import SyncRounds
from fedsys.traces.fleet import DeviceFleet
from tests.sim.federation import make_simulator


def _session_fleet(ends: list[float], period_s: float = 10_000.0) -> DeviceFleet:
    """Client i online on ``[0, ends[i]]`` of every period; 1 s per sample, fast links."""
    n = len(ends)
    return DeviceFleet(
        compute_s_per_sample=np.ones(n),
        down_bytes_per_s=np.full(n, 1e9),
        up_bytes_per_s=np.full(n, 1e9),
        period_s=np.full(n, period_s),
        avail_offsets=np.arange(n + 1),
        avail_starts=np.zeros(n),
        avail_ends=np.asarray(ends, dtype=float),
    )


def _engine(fleet: DeviceFleet, selector, steps: int = 2) -> Engine:
    simulator = make_simulator(fleet, SyncRounds(overcommit=1.0), steps=steps)
    return Engine(
        EngineParts(
            dataset=simulator.dataset,
            model=simulator.model,
            fleet=fleet,
            selector=selector,
            strategy=simulator.strategy,
            trainer=simulator.trainer,
            seed=0,
        )
    )


def test_predicted_session_end_is_exact_on_a_trace_with_known_sessions() -> None:
    ends = [30.0, 500.0, 7.5, 9_999.0, 120.0]
    selector = AvailabilityAwareSelector(RandomSelector(seed=0), pool=1.0)
    engine = _engine(_session_fleet(ends), selector)
    engine.clock.advance_to(5.0)
    engine.select(0, 2)
    np.testing.assert_array_equal(engine.selector_state.online_until_s, ends)
    # Next period: the same sessions, one period later.
    engine.clock.advance_to(10_003.0)
    engine.select(1, 2)
    np.testing.assert_array_equal(engine.selector_state.online_until_s, np.add(ends, 10_000.0))


def test_clients_that_would_drop_are_never_launched_and_the_run_has_no_dropouts() -> None:
    # 2 steps x batch 4 = 8 samples at 1 s: every round takes 8 s; clients 0-4 leave at 5 s.
    ends = [5.0, 5.0, 5.0, 5.0, 5.0, 9_000.0, 9_000.0, 9_000.0]
    fleet = _session_fleet(ends)
    aware = AvailabilityAwareSelector(RandomSelector(seed=1), pool=1.0)
    simulator = make_simulator(fleet, SyncRounds(overcommit=1.0), rounds=1, clients_per_round=3)
    simulator.selector = aware
    picked = [c for r in simulator.run().records for c in r.extra["clients"]]
    assert sorted(picked) == [5, 6, 7]
    # Random, on the same fleet, does pick the leavers (and loses them) in some round.
    random_sim = make_simulator(fleet, SyncRounds(overcommit=1.0), rounds=6, clients_per_round=3)
    assert sum(r.dropouts for r in random_sim.run().records) > 0
    aware_sim = make_simulator(fleet, SyncRounds(overcommit=1.0), rounds=6, clients_per_round=3)
    aware_sim.selector = aware
    assert sum(r.dropouts for r in aware_sim.run().records) == 0

"""Adaptive local work: steps from idle time, partial uploads, both charged on the clock."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from fedsys.config.rounds import SyncRounds as SyncConfig
from fedsys.core.update import ClientReport
from fedsys.selection.random import RandomSelector
from fedsys.sim.engine import Engine, EngineParts
from fedsys.sim.rounds.setup import build_round_based
from fedsys.sim.rounds.sync import SyncRounds
from fedsys.sim.work import WorkPolicy, plan_work
from fedsys.traces.fleet import DeviceFleet
from tests.sim.federation import make_simulator

# tiny_dataset: 12 samples per client; batch 4, 2 base steps: 8 samples a round.
BASE_STEPS, BATCH = 2, 4


class _Listening(RandomSelector):
    """Random selection that keeps every report it is given."""

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.reports: list[ClientReport] = []

    def feedback(self, state: None, reports: Sequence[ClientReport]) -> None:
        self.reports.extend(reports)
        return state


def _engine(fleet: DeviceFleet, selector=None) -> Engine:
    simulator = make_simulator(fleet, SyncRounds(), steps=BASE_STEPS, batch_size=BATCH)
    return Engine(
        EngineParts(
            dataset=simulator.dataset,
            model=simulator.model,
            fleet=fleet,
            selector=selector or simulator.selector,
            strategy=simulator.strategy,
            trainer=simulator.trainer,
            seed=0,
        )
    )


def _speeds(up_bytes_per_s: float | np.ndarray = 1e9) -> DeviceFleet:
    """Five devices, device i needs (i + 1) s per sample; transfers take ~nothing."""
    return DeviceFleet.always_available(
        5,
        compute_s_per_sample=np.arange(1, 6, dtype=float),
        down_bytes_per_s=1e9,
        up_bytes_per_s=up_bytes_per_s,
    )


def test_fast_clients_spend_their_idle_time_on_more_steps_up_to_the_cap() -> None:
    engine = _engine(_speeds())
    # Base durations 8, 16, 24, 32, 40 s; the round closes at the 2nd arrival: 16 s.
    plan = plan_work(engine, [0, 1, 2, 3, 4], WorkPolicy("idle_time", max_factor=4.0), 2)
    assert plan is not None
    np.testing.assert_array_equal(plan.steps, [4, 2, 2, 2, 2])  # 16 s / (4 x 1 s) = 4
    np.testing.assert_array_equal(plan.samples, plan.steps * BATCH)
    capped = plan_work(engine, [0, 1], WorkPolicy("idle_time", max_factor=1.5), 2)
    np.testing.assert_array_equal(capped.steps, [3, 2])  # the idle time would allow 4
    assert plan_work(engine, [0, 1], WorkPolicy(), 2) is None


def test_planned_steps_are_charged_on_the_clock_trained_and_reported() -> None:
    selector = _Listening()
    engine = _engine(_speeds(), selector)
    plan = plan_work(engine, [0, 1, 2], WorkPolicy("idle_time"), 2)
    launches = engine.launch([0, 1, 2], version=0, work=plan)
    assert [launch.local_steps for launch in launches] == [4, 2, 2]
    np.testing.assert_allclose(
        [launch.compute_s for launch in launches], [4 * 4 * 1.0, 2 * 4 * 2.0, 2 * 4 * 3.0]
    )
    assert [launch.samples_processed for launch in launches] == [16, 8, 8]
    update = engine.train(launches[0])
    assert update.loss.samples_seen == 16  # the trainer really ran 4 steps of 4
    # Through a whole round: the reports the selector gets carry the processed samples.
    mode = SyncRounds(overcommit=2.5, work=WorkPolicy("idle_time"))  # all 5 picked, K = 2
    records = list(mode.run(_engine(_speeds(), selector), 1, 2))
    done = {r.client_id: r.samples_processed for r in selector.reports if r.completed}
    assert done == {0: 16, 1: 8}  # both arrive at 16 s, the round's target
    assert records[0].duration_s == pytest.approx(16.0, abs=1e-3)


def test_work_near_the_end_of_a_session_never_outlasts_it() -> None:
    # Device 0 is online on [0, 10] s of every 1000 s: 4 steps would take 16 s.
    fleet = DeviceFleet(
        compute_s_per_sample=np.arange(1, 6, dtype=float),
        down_bytes_per_s=np.full(5, 1e9),
        up_bytes_per_s=np.full(5, 1e9),
        period_s=np.full(5, 1000.0),
        avail_offsets=np.arange(6),
        avail_starts=np.zeros(5),
        avail_ends=np.array([10.0, 900.0, 900.0, 900.0, 900.0]),
    )
    plan = plan_work(_engine(fleet), [0, 1, 2], WorkPolicy("idle_time"), 2)
    assert plan.steps[0] == 2  # floor(10 / 4) = 2 = the base: no extra steps


def test_a_slow_uploader_sends_a_top_k_share_charged_by_its_bytes() -> None:
    up = np.array([1e9, 1e9, 1e9, 1e9, 2.0])  # device 4 uploads 2 bytes/s
    fleet = DeviceFleet.always_available(
        5, compute_s_per_sample=1.0, down_bytes_per_s=1e9, up_bytes_per_s=up
    )
    engine = _engine(fleet)
    policy = WorkPolicy("idle_time", partial_upload=True, min_upload_fraction=0.25)
    plan = plan_work(engine, [0, 1, 2, 3, 4], policy, 4)
    # nn.Linear(4, 2): 10 values, 40 bytes dense; top 25 %: 3 values x 8 bytes.
    np.testing.assert_allclose(plan.upload_fraction, [1, 1, 1, 1, 0.25])
    np.testing.assert_array_equal(plan.upload_bytes, [40, 40, 40, 40, 24])
    launches = engine.launch([0, 1, 2, 3, 4], version=0, work=plan)
    assert launches[4].bytes_up == 24
    assert launches[4].upload_s == pytest.approx(24 / 2.0)
    update = engine.train(launches[4])
    assert int((update.delta.flat != 0).sum()) == 3


def test_local_work_is_fixed_by_default_and_built_from_config() -> None:
    assert build_round_based(SyncConfig(), "selector").work == WorkPolicy()
    mode = build_round_based(
        SyncConfig(local_work={"mode": "idle_time", "max_factor": 2.0}), "selector"
    )
    assert mode.work == WorkPolicy("idle_time", max_factor=2.0)


def test_every_backend_trains_the_planned_steps() -> None:
    from fedsys.sim.backends.base import TrainJob, train_one
    from fedsys.sim.backends.vectorized import VectorizedBackend
    from fedsys.sim.engine import training_parts

    engine = _engine(_speeds())
    parts = training_parts(engine.parts)
    jobs = [
        TrainJob(client_id=c, start=engine.weights, seed=(0, 0, c, c), local_steps=steps)
        for c, steps in ((0, 5), (1, 2), (2, None))
    ]
    batched = dict(VectorizedBackend().open(parts).train(jobs))
    for index, job in enumerate(jobs):
        reference = train_one(parts, job)
        assert batched[index].steps == reference.steps == (job.local_steps or BASE_STEPS)
        np.testing.assert_allclose(
            batched[index].delta.flat.numpy(), reference.delta.flat.numpy(), atol=1e-5
        )

"""Runs with late updates, adaptive work and availability-aware selection resume exactly."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from fedsys.selection.availability import AvailabilityAwareSelector
from fedsys.selection.oort import OortSelector
from fedsys.sim.rounds.deadline import DeadlineRounds
from fedsys.sim.rounds.late import LatePolicy
from fedsys.sim.rounds.sync import SyncRounds
from fedsys.sim.simulator import Simulator
from fedsys.sim.work import WorkPolicy
from fedsys.traces import generate_fleet
from tests.sim.federation import make_simulator

LATE = LatePolicy(curve="polynomial", exponent=0.5, max_staleness=3)
WORK = WorkPolicy(mode="idle_time", max_factor=3.0, partial_upload=True, min_upload_fraction=0.2)


def _simulator(mode: str, checkpoint: Path | None = None) -> Simulator:
    fleet = generate_fleet(24, seed=3)
    if mode == "sync":
        round_mode = SyncRounds(overcommit=1.5, late=LATE, work=WORK)
    else:
        round_mode = DeadlineRounds(deadline_s=60.0, overcommit=1.5, late=LATE, work=WORK)
    sim = make_simulator(fleet, round_mode, rounds=8, clients_per_round=4)
    sim.selector = AvailabilityAwareSelector(OortSelector(seed=0, pacer_step=1), pool=1.5)
    sim.eval_every = 2
    sim.checkpoint_path = checkpoint
    return sim


@pytest.mark.parametrize("mode", ["sync", "deadline"])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path: Path, mode: str) -> None:
    whole = _simulator(mode)
    expected = whole.run()
    checkpoint = tmp_path / "checkpoint.pt"
    first = _simulator(mode, checkpoint)
    first.run(should_stop=lambda: len(first.records_) == 3)
    second = _simulator(mode, checkpoint)
    resumed = second.run(resume_from=checkpoint)

    def comparable(result):
        return [{k: v for k, v in asdict(r).items() if k != "wall_s"} for r in result.records]

    assert resumed.status == "completed"
    assert comparable(resumed) == comparable(expected)
    torch.testing.assert_close(second.weights_.flat, whole.weights_.flat, rtol=0, atol=0)
    assert any("late" in r.extra for r in expected.records) or mode == "deadline"

"""Interrupted then resumed runs equal uninterrupted ones; ``run()`` is re-entrant."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import torch

from fedsys.aggregation.compression import TopK
from fedsys.aggregation.fedopt import FedAdam, FedOptSettings
from fedsys.metrics.records import RunResult
from fedsys.parts.checkpoint import CheckpointError, load_checkpoint
from fedsys.selection.oort import OortSelector
from fedsys.sim.rounds.base import RoundMode
from fedsys.sim.rounds.buffered import BufferedAsyncRounds
from fedsys.sim.rounds.deadline import DeadlineRounds
from fedsys.sim.rounds.sync import SyncRounds
from fedsys.sim.simulator import Simulator
from fedsys.traces import generate_fleet
from tests.sim.federation import make_simulator

ROUNDS = 6

MODES: dict[str, RoundMode] = {
    "sync": SyncRounds(overcommit=1.5),
    "deadline": DeadlineRounds(deadline_s=60.0, overcommit=1.5),
    "async": BufferedAsyncRounds(max_concurrency=6, buffer_size=3, max_staleness=3),
}


def _simulator(mode: str, parts: str, checkpoint: Path | None = None) -> Simulator:
    """A small federation on a generated fleet with real availability sessions."""
    fleet = generate_fleet(24, seed=3)
    sim = make_simulator(fleet, MODES[mode], rounds=ROUNDS, clients_per_round=4)
    if parts == "oort":
        sim.selector = OortSelector(seed=0, pacer_step=1)
    else:
        sim.strategy = FedAdam(FedOptSettings(server_lr=0.05))
        sim.compressor = TopK(fraction=0.25)  # error-feedback residuals live on clients
    sim.eval_every = 2
    sim.checkpoint_path = checkpoint
    return sim


def _comparable(result: RunResult) -> list[dict[str, Any]]:
    return [{k: v for k, v in asdict(r).items() if k != "wall_s"} for r in result.records]


@pytest.mark.parametrize("parts", ["oort", "fedadam"])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_interrupted_then_resumed_equals_uninterrupted(
    tmp_path: Path, mode: str, parts: str
) -> None:
    # Prepare: the reference run, and a run asked to stop after round 2.
    whole = _simulator(mode, parts)
    expected = whole.run()
    checkpoint = tmp_path / "checkpoint.pt"
    first = _simulator(mode, parts, checkpoint)
    stopped = first.run(should_stop=lambda: len(first.records_) == 3)
    # Act: a fresh simulator (a new process would build one) resumes the run.
    second = _simulator(mode, parts, checkpoint)
    resumed = second.run(resume_from=checkpoint)
    # Assert
    assert stopped.status == "interrupted"
    assert len(stopped.records) == 3
    assert resumed.status == "completed"
    assert _comparable(resumed) == _comparable(expected)
    torch.testing.assert_close(second.weights_.flat, whole.weights_.flat, rtol=0, atol=0)


def test_run_is_reentrant_and_leaves_the_model_as_it_was() -> None:
    sim = _simulator("sync", "fedadam")
    before = [p.detach().clone() for p in sim.model.parameters()]

    first, second = sim.run(), sim.run()

    assert _comparable(first) == _comparable(second)
    for kept, now in zip(before, sim.model.parameters(), strict=True):
        torch.testing.assert_close(now.detach(), kept, rtol=0, atol=0)


def test_checkpoints_are_written_every_n_rounds_atomically(tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint.pt"
    sim = _simulator("sync", "oort", checkpoint)
    sim.checkpoint_every = 2
    seen: list[int] = []

    def saved_rounds(record: object) -> None:
        seen.append(len(load_checkpoint(checkpoint)["records"]) if checkpoint.exists() else 0)

    sim.run(on_round=saved_rounds)

    assert seen == [0, 0, 2, 2, 4, 4]
    assert len(load_checkpoint(checkpoint)["records"]) == ROUNDS
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_a_truncated_or_foreign_checkpoint_is_refused_naming_the_file(tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint.pt"
    _simulator("sync", "oort", checkpoint).run()
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])

    with pytest.raises(CheckpointError, match=r"checkpoint\.pt"):
        _simulator("sync", "oort").run(resume_from=checkpoint)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        _simulator("sync", "oort").run(resume_from=tmp_path / "missing")


def test_a_checkpoint_of_another_run_is_refused(tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint.pt"
    sim = _simulator("sync", "oort", checkpoint)
    sim.config = {"seed": 0, "rounds": ROUNDS}
    sim.run()
    other = _simulator("sync", "oort")
    other.config = {"seed": 1, "rounds": ROUNDS}

    with pytest.raises(CheckpointError, match="seed"):
        other.run(resume_from=checkpoint)

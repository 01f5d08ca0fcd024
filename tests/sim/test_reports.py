"""What the selector hears after a round: each client's outcome, told truthfully."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedsys.aggregation.validation import UpdateValidator
from fedsys.core.update import ClientReport
from fedsys.selection.oort import OortSelector
from fedsys.selection.oort_state import OortState
from fedsys.sim.rounds.buffered import BufferedAsyncRounds
from fedsys.sim.rounds.sync import SyncRounds
from fedsys.traces.fleet import DeviceFleet
from tests.sim.federation import make_simulator


class RecordingOort(OortSelector):
    """Oort that also keeps every report it is given (the real feedback still runs)."""

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.heard: list[ClientReport] = []

    def feedback(self, state: OortState, reports: Sequence[ClientReport]) -> OortState:
        self.heard.extend(reports)
        return super().feedback(state, reports)


def _fleet(n: int) -> DeviceFleet:
    return DeviceFleet.always_available(n, compute_s_per_sample=np.linspace(1.0, 2.0, n))


def test_a_refused_update_reaches_the_selector_as_rejected_not_completed() -> None:
    # Prepare: every update is larger than the bound, so validation refuses them all.
    sim = make_simulator(_fleet(6), SyncRounds(overcommit=1.0), rounds=1, clients_per_round=3)
    sim.selector = RecordingOort()
    sim.validator = UpdateValidator(max_norm=1e-12)
    # Act
    result = sim.run()
    # Assert
    assert result.records[0].participants == 0
    assert result.records[0].rejected == 3
    assert [r.outcome for r in sim.selector.heard] == ["rejected"] * 3
    assert not any(r.completed or r.loss is not None for r in sim.selector.heard)


def test_reports_carry_outcomes_and_the_samples_processed() -> None:
    # Prepare: 2 steps x batch 4 = 8 samples per client; 5 picked, the first 3 count.
    sim = make_simulator(_fleet(6), SyncRounds(overcommit=5 / 3), rounds=1, clients_per_round=3)
    sim.selector = RecordingOort()
    # Act
    sim.run()
    # Assert
    outcomes = sorted(r.outcome for r in sim.selector.heard)
    assert outcomes == ["completed"] * 3 + ["straggled"] * 2
    assert all(r.samples_processed == 8 for r in sim.selector.heard)
    assert all(r.loss is not None for r in sim.selector.heard if r.completed)


def test_async_rounds_report_aggregated_updates_as_completed() -> None:
    sim = make_simulator(_fleet(6), BufferedAsyncRounds(max_concurrency=4, buffer_size=2), rounds=2)
    sim.selector = RecordingOort()

    sim.run()

    completed = [r for r in sim.selector.heard if r.outcome == "completed"]
    assert len(completed) == 4

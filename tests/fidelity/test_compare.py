"""Comparison, attribution and calibration on hand-made round records."""

from __future__ import annotations

import numpy as np
import pytest

from fedsys.fidelity.compare import TERMS, calibrate, calibrate_task, compare, round_periods
from fedsys.metrics.records import RoundRecord

EXPECTED_S = np.array([1.0, 2.0, 3.0, 4.0])


def _sim(idx: int, start: float, end: float, clients: list[int], accuracy: float) -> RoundRecord:
    return RoundRecord(
        round_idx=idx, start_s=start, end_s=end, wall_s=0.0, selected=len(clients),
        participants=len(clients), accuracy=accuracy, extra={"clients": clients},
    )  # fmt: skip


def _real(
    idx: int, start: float, end: float, durations: dict[int, float], accuracy: float
) -> RoundRecord:
    clients = [
        {"client_id": c, "outcome": "completed", "duration_s": d} for c, d in durations.items()
    ]
    return RoundRecord(
        round_idx=idx, start_s=start, end_s=end, wall_s=0.0, selected=len(clients),
        participants=len(clients), accuracy=accuracy, extra={"clients": clients},
    )  # fmt: skip


def test_round_periods_run_to_the_next_start_and_the_last_to_its_end() -> None:
    records = [_sim(0, 0.0, 2.0, [0], 0.1), _sim(1, 2.5, 4.0, [0], 0.2)]

    assert round_periods(records) == [2.5, 1.5]


def test_terms_add_up_to_the_difference_of_each_round() -> None:
    sim = [_sim(0, 0.0, 3.0, [0, 2], 0.4), _sim(1, 3.0, 5.0, [1], 0.7)]
    # round 0: same clients, client 2 slower than its profile (3.3 s) and 0.2 s server;
    # round 1: client 3 (expected 4 s) took the place of client 1 (2 s)
    real = [_real(0, 0.0, 3.5, {0: 1.05, 2: 3.3}, 0.5), _real(1, 3.5, 7.6, {3: 4.1}, 0.7)]
    timings = [{"client_id": 2, "round_idx": 0, "compute_s": 2.2, "target_compute_s": 2.0}]

    report = compare(sim, real, EXPECTED_S, timings, target_accuracy=0.6)

    first, second = report.rounds
    assert first.same_participants and not second.same_participants
    assert first.terms["compute"] == pytest.approx(0.2)
    assert first.terms["transfer"] == pytest.approx(0.1)
    assert first.terms["server"] == pytest.approx(0.2)
    assert second.terms["availability"] == pytest.approx(2.0)
    for row in report.rounds:
        assert sum(row.terms[t] for t in TERMS) == pytest.approx(row.real_s - row.sim_s)
    assert report.totals["ratio"] == pytest.approx(7.6 / 5.0)
    assert report.totals["time_to_target_error"] == pytest.approx((7.6 - 5.0) / 5.0)
    assert report.totals["rounds_same_participants"] == 1


def test_calibration_is_the_servers_time_beyond_the_slowest_client() -> None:
    real = [
        _real(0, 0.0, 2.3, {0: 2.0}, 0.1),
        _real(1, 2.5, 4.6, {0: 1.8, 1: 1.0}, 0.2),
        _real(2, 4.9, 7.0, {0: 1.5, 1: 1.2, 2: 1.0}, 0.3),
    ]

    round_s, update_s = calibrate(real)

    # server times 0.5, 0.6, 0.6 over 1, 2, 3 updates: 0.433 + 0.05 per update
    assert update_s == pytest.approx(0.05)
    assert round_s == pytest.approx(0.5 - 0.05 * 1 + 0.5 / 30, abs=0.02)


def test_calibration_without_varying_participants_is_the_median() -> None:
    real = [_real(i, 3.0 * i, 3.0 * i + 2.5, {0: 2.0 + 0.1 * i}, 0.1) for i in range(3)]

    assert calibrate(real) == (pytest.approx(0.9), 0.0)


def test_task_calibration_is_the_median_time_beyond_the_profile() -> None:
    real = [
        _real(0, 0.0, 2.3, {0: 1.02, 1: 2.03}, 0.1),
        _real(1, 2.5, 4.6, {2: 3.01, 3: 4.05}, 0.2),
    ]

    assert calibrate_task(real, EXPECTED_S) == pytest.approx(0.025)
    assert calibrate_task([_real(0, 0.0, 1.0, {0: 0.9}, 0.1)], EXPECTED_S) == 0.0
    assert calibrate_task([], EXPECTED_S) == 0.0

"""Time-to-accuracy and the run summary computed from round records."""

from __future__ import annotations

import math

from fedsys.metrics.records import RoundRecord, RunResult


def _record(idx: int, end_s: float, accuracy: float | None, **kw: int) -> RoundRecord:
    return RoundRecord(
        round_idx=idx,
        start_s=end_s - 10.0,
        end_s=end_s,
        wall_s=0.5,
        selected=4,
        participants=3,
        accuracy=accuracy,
        **kw,
    )


def test_time_to_accuracy_is_the_first_evaluated_round_at_target() -> None:
    result = RunResult(
        (
            _record(0, 10, None),
            _record(1, 20, 0.6),
            _record(2, 30, 0.9),
            _record(3, 40, 0.5),
            _record(4, 50, 0.95),
        )
    )

    assert result.time_to_accuracy(0.9) == 30
    assert result.rounds_to_accuracy(0.9) == 3
    assert result.time_to_accuracy(0.99) is None
    assert result.final_accuracy == 0.95
    assert result.best_accuracy == 0.95


def test_summary_adds_up_the_rounds() -> None:
    result = RunResult(
        (_record(0, 10, 0.5, dropouts=1, bytes_up=7), _record(1, 25, 0.8, stragglers=2))
    )

    summary = result.summary(target_accuracy=0.8)

    assert summary["rounds"] == 2
    assert summary["virtual_time_s"] == 25
    assert math.isclose(summary["virtual_time_h"], 25 / 3600)
    assert summary["time_to_target_s"] == 25
    assert summary["rounds_to_target"] == 2
    assert summary["participants"] == 6
    assert (summary["dropouts"], summary["stragglers"], summary["bytes_up"]) == (1, 2, 7)
    assert summary["wall_time_s"] == 1.0
    assert summary["mean_round_s"] == 10.0


def test_extra_fields_flatten_into_json_rows() -> None:
    record = RoundRecord(0, 0.0, 5.0, 0.1, 2, 2, extra={"clients": [3, 4]})

    row = record.to_json()

    assert row["clients"] == [3, 4]
    assert row["duration_s"] == 5.0
    assert "extra" not in row


def test_a_real_runs_summary_has_wall_times_and_nothing_virtual() -> None:
    result = RunResult(
        (
            RoundRecord(round_idx=0, start_s=2.0, end_s=5.0, wall_s=3.0, selected=3,
                        participants=3),
            RoundRecord(round_idx=1, start_s=5.5, end_s=9.0, wall_s=3.5, selected=3,
                        participants=3),
        )
    )

    summary = result.summary(clock="wall")

    assert summary["training_time_s"] == 7.0
    assert not [key for key in summary if "virtual" in key or key == "wall_time_s"]
    assert RunResult(()).summary(clock="wall")["training_time_s"] == 0.0

"""Round records as CSV rows and TensorBoard scalars."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fedsys.metrics.records import RoundRecord
from fedsys.metrics.tables import CSV_COLUMNS, CsvRoundWriter, TensorBoardRoundWriter


def _records() -> list[RoundRecord]:
    return [
        RoundRecord(0, 0.0, 5.0, 0.1, 3, 2, train_loss=0.9, extra={"epsilon": 1.5}),
        RoundRecord(1, 5.0, 9.0, 0.1, 3, 3, train_loss=float("nan"), accuracy=0.75),
    ]


def test_csv_has_a_header_and_one_row_per_round(tmp_path: Path) -> None:
    writer = CsvRoundWriter(tmp_path / "rounds.csv")
    for record in _records():
        writer.write(record)

    rows = list(csv.DictReader((tmp_path / "rounds.csv").open()))

    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["round_idx"] for r in rows] == ["0", "1"]
    assert [r["duration_s"] for r in rows] == ["5.0", "4.0"]
    assert rows[1]["train_loss"] == "" and rows[0]["accuracy"] == ""
    assert rows[1]["accuracy"] == "0.75"


def test_csv_rewrite_keeps_exactly_the_given_records(tmp_path: Path) -> None:
    writer = CsvRoundWriter(tmp_path / "rounds.csv")
    for record in _records():
        writer.write(record)

    writer.rewrite(_records()[:1])

    rows = list(csv.DictReader((tmp_path / "rounds.csv").open()))
    assert [r["round_idx"] for r in rows] == ["0"]


def test_tensorboard_event_files_are_written_and_readable(tmp_path: Path) -> None:
    writer = TensorBoardRoundWriter(tmp_path / "tb")
    for record in _records():
        writer.write(record)
    writer.close()

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()

    tags = set(events.Tags()["scalars"])
    assert {"round/participants", "round/end_s", "round/epsilon", "round/accuracy"} <= tags
    participants = events.Scalars("round/participants")
    assert [(e.step, e.value) for e in participants] == [(0, 2.0), (1, 3.0)]
    assert [e.step for e in events.Scalars("round/train_loss")] == [0]  # NaN is skipped
    assert events.Scalars("round/epsilon")[0].value == pytest.approx(1.5)

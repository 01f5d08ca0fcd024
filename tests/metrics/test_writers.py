"""Result files are written whole or not at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedsys.metrics.records import RoundRecord
from fedsys.metrics.writers import JsonlRoundWriter, atomic_write_text, write_summary


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "summary.json"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")

    assert path.read_text() == "new"
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    write_summary(path, {"rounds": 1})

    with pytest.raises(TypeError):
        atomic_write_text(path, 42)  # type: ignore[arg-type]

    assert json.loads(path.read_text()) == {"rounds": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_jsonl_writer_appends_one_line_per_round(tmp_path: Path) -> None:
    writer = JsonlRoundWriter(tmp_path / "rounds.jsonl")
    for idx in range(3):
        writer.write(RoundRecord(idx, idx * 10.0, idx * 10.0 + 5, 0.1, 2, 2))

    rows = [json.loads(line) for line in (tmp_path / "rounds.jsonl").read_text().splitlines()]
    assert [row["round_idx"] for row in rows] == [0, 1, 2]


def test_nan_and_infinity_are_written_as_null(tmp_path: Path) -> None:
    writer = JsonlRoundWriter(tmp_path / "rounds.jsonl")
    writer.write(RoundRecord(0, 0.0, 1.0, 0.1, 2, 2, train_loss=float("nan")))
    write_summary(tmp_path / "summary.json", {"mean_round_s": float("inf"), "x": [float("-inf")]})

    row = json.loads((tmp_path / "rounds.jsonl").read_text())
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert row["train_loss"] is None
    assert summary == {"mean_round_s": None, "x": [None]}
    assert "NaN" not in (tmp_path / "rounds.jsonl").read_text()

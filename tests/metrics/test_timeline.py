"""Timelines travel in a record's extra and land in clients.jsonl, not rounds.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

from fedsys.metrics.records import RoundRecord
from fedsys.metrics.run_folder import CLIENTS_FILE, ROUNDS_FILE, RunFolder
from fedsys.metrics.timeline import TIMELINE_KEY, client_row, round_timeline


def _record(round_idx: int, with_timeline: bool = True) -> RoundRecord:
    extra: dict = {"clients": [7]}
    if with_timeline:
        rows = [client_row(7, 0.0, 1.23456, 2.0, 0.5, "completed", 3.73456)]
        extra[TIMELINE_KEY] = round_timeline(10.0 * round_idx, 10.0 * round_idx + 4, rows, 9, 7)
    return RoundRecord(round_idx, 10.0 * round_idx, 10.0 * round_idx + 4, 0.1, 1, 1, extra=extra)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_write_round_moves_the_timeline_to_clients_jsonl(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run", {"rounds": 2})
    folder.start()

    folder.write_round(_record(0))
    folder.write_round(_record(1, with_timeline=False))

    rounds = _lines(tmp_path / "run" / ROUNDS_FILE)
    assert [TIMELINE_KEY in row for row in rounds] == [False, False]
    assert rounds[0]["clients"] == [7]
    (timeline,) = _lines(tmp_path / "run" / CLIENTS_FILE)
    assert timeline["round_idx"] == 0 and timeline["v"] == 1 and timeline["closed_by"] == 7
    assert timeline["clients"] == [[7, 0.0, 1.235, 2.0, 0.5, "c", 3.735]]


def test_resume_rewrites_both_files_to_the_checkpoint_records(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run", {"rounds": 3})
    folder.start()
    for round_idx in range(3):
        folder.write_round(_record(round_idx))

    RunFolder(tmp_path / "run", {"rounds": 3}).resume([_record(0), _record(1)])

    assert [r["round_idx"] for r in _lines(tmp_path / "run" / ROUNDS_FILE)] == [0, 1]
    assert [r["round_idx"] for r in _lines(tmp_path / "run" / CLIENTS_FILE)] == [0, 1]

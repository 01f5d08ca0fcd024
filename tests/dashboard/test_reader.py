"""Reading a run folder that is still being written: each line once, whole lines only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedsys.dashboard.catalog import RunCatalog, UnknownRunError
from fedsys.dashboard.reader import RunReader


def _append(path: Path, text: str) -> None:
    with path.open("a") as handle:
        handle.write(text)


def test_rounds_are_read_incrementally_stopping_at_a_line_being_written(tmp_path: Path) -> None:
    rounds = tmp_path / "rounds.jsonl"
    _append(rounds, json.dumps({"round_idx": 0}) + "\n" + '{"round_idx": 1')
    reader = RunReader(tmp_path)

    assert reader.refresh()["rounds"] is True
    assert reader.rounds() == [{"round_idx": 0}]
    assert reader.refresh()["rounds"] is False  # nothing whole was added
    _append(rounds, "}\n")
    reader.refresh()
    assert reader.rounds(since=1) == [{"round_idx": 1}]


def test_a_rewritten_file_starts_over_with_a_new_generation(tmp_path: Path) -> None:
    rounds = tmp_path / "rounds.jsonl"
    rounds.write_text("".join(json.dumps({"round_idx": i}) + "\n" for i in range(3)))
    reader = RunReader(tmp_path)
    reader.refresh()
    generation = reader.generation()

    rounds.write_text(json.dumps({"round_idx": 0}) + "\n")  # a resume kept one round
    reader.refresh()

    assert reader.generation() == generation + 1
    assert reader.rounds() == [{"round_idx": 0}]


def test_timelines_keep_summaries_in_memory_and_read_client_rows_on_demand(
    tmp_path: Path,
) -> None:
    lines = [
        {"round_idx": r, "v": 1, "available": 5, "clients": [[r, 0, 1, 2, 3, "c", 6]]}
        for r in range(3)
    ]
    (tmp_path / "clients.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    reader = RunReader(tmp_path)
    reader.refresh()

    overview = reader.timeline_overview()
    assert [o["outcomes"] for o in overview] == [{"c": 1}] * 3
    assert all("clients" not in o for o in overview)
    assert reader.timeline(2) == lines[2]
    assert reader.timeline(7) is None


def test_the_catalog_finds_runs_below_its_roots_and_nothing_outside(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for name in ("a", "b/sim", "b/deploy"):
        (root / name).mkdir(parents=True)
        (root / name / "config.yaml").write_text("rounds: 1\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "config.yaml").write_text("rounds: 1\n")
    (root / "link").symlink_to(outside)
    catalog = RunCatalog([root])

    ids = [entry.run_id for entry in catalog.scan()]

    assert sorted(ids) == ["runs/a", "runs/b/deploy", "runs/b/sim"]
    for bad in ("runs/link", "../elsewhere", "runs/../elsewhere", str(outside)):
        with pytest.raises(UnknownRunError):
            catalog.reader(bad)


def test_a_deployment_round_reads_as_a_timeline_of_measured_durations(tmp_path: Path) -> None:
    record = {
        "round_idx": 0,
        "start_s": 1.0,
        "end_s": 9.0,
        "clients": [
            {"client_id": 0, "outcome": "dropped", "duration_s": None},
            {"client_id": 1, "outcome": "completed", "duration_s": 7.5},
            {"client_id": 2, "outcome": "straggled", "duration_s": None},
        ],
    }
    (tmp_path / "rounds.jsonl").write_text(json.dumps(record) + "\n")
    reader = RunReader(tmp_path)
    reader.refresh()

    timeline = reader.timeline(0)

    assert timeline is not None and timeline["measured"] is True
    assert [(c[0], c[5], c[6]) for c in timeline["clients"]] == [
        (0, "d", None),
        (1, "c", 7.5),
        (2, "s", None),
    ]

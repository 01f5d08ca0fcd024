"""One run-folder writer for every runtime: it never mixes two runs, and writes whole files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedsys.metrics.records import RoundRecord, RunResult
from fedsys.metrics.run_folder import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    ROUNDS_FILE,
    SUMMARY_FILE,
    OutputExistsError,
    RunFolder,
    run_files_in,
)


def _record(round_idx: int) -> RoundRecord:
    return RoundRecord(
        round_idx=round_idx,
        start_s=float(round_idx),
        end_s=round_idx + 1.0,
        wall_s=1.0,
        selected=3,
        participants=3,
    )


def _folder(path: Path) -> RunFolder:
    return RunFolder(path, {"seed": 0, "rounds": 2}, summary_fields={"runtime": "test"})


def test_a_folder_holding_another_run_is_refused_unless_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / ROUNDS_FILE).write_text('{"round_idx": 7}\n')
    (out / CHECKPOINT_FILE).write_bytes(b"old")
    (out / "notes.txt").write_text("mine")

    with pytest.raises(OutputExistsError, match="is not empty"):
        _folder(out).start()
    _folder(out).start(overwrite=True)

    assert sorted(p.name for p in out.iterdir()) == [CONFIG_FILE, "notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"


def test_files_that_are_not_a_run_do_not_block_a_new_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    (out / "pki").mkdir(parents=True)
    (out / "server.log").write_text("started\n")

    _folder(out).start()

    assert run_files_in(out) == [CONFIG_FILE]
    assert (out / CONFIG_FILE).read_text().startswith("# resolved config written by fedsys")


def test_resume_keeps_exactly_the_checkpoints_rounds(tmp_path: Path) -> None:
    out = tmp_path / "run"
    writer = _folder(out)
    writer.start()
    for i in range(3):
        writer.write_round(_record(i))

    _folder(out).resume([_record(0), _record(1)])

    rows = [json.loads(line) for line in (out / ROUNDS_FILE).read_text().splitlines()]
    assert [r["round_idx"] for r in rows] == [0, 1]


def test_summary_is_written_atomically_with_the_runs_fields(tmp_path: Path) -> None:
    out = tmp_path / "run"
    writer = _folder(out)
    writer.start()
    result = RunResult((_record(0),), {"seed": 0})

    summary = writer.write_summary(result, model_bytes=40)

    on_disk = json.loads((out / SUMMARY_FILE).read_text())
    assert on_disk == summary
    assert (on_disk["runtime"], on_disk["model_bytes"], on_disk["rounds"]) == ("test", 40, 1)
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_failed_summary_write_keeps_the_previous_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    writer = _folder(out)
    writer.start()
    writer.write_summary(RunResult((_record(0),), {}))
    before = (out / SUMMARY_FILE).read_text()

    def broken_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("fedsys.metrics.writers.os.fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        writer.write_summary(RunResult((_record(0), _record(1)), {}))

    assert (out / SUMMARY_FILE).read_text() == before
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_read_rounds_stops_at_a_line_still_being_written(tmp_path: Path) -> None:
    from fedsys.metrics.run_folder import ROUNDS_FILE, read_rounds

    whole = [RoundRecord(i, float(i), i + 1.0, 0.1, 3, 2) for i in range(2)]
    lines = [json.dumps(r.to_json()) for r in whole]
    (tmp_path / ROUNDS_FILE).write_text("\n".join(lines) + '\n{"round_idx": 2, "sta')

    read = read_rounds(tmp_path)

    assert [r.round_idx for r in read] == [0, 1]
    assert [r.end_s for r in read] == [1.0, 2.0]
    assert read_rounds(tmp_path / "missing") == []

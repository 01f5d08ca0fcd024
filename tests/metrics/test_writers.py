"""Result files are written whole or not at all."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fedsys.metrics.records import RoundRecord
from fedsys.metrics.writers import (
    JsonlRoundWriter,
    append_json_lines,
    append_text,
    atomic_write_text,
    write_summary,
)


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


def test_append_json_lines_adds_strict_lines_and_counts_them(tmp_path: Path) -> None:
    path = tmp_path / "new" / "folder" / "log.jsonl"

    first = append_json_lines(path, [{"a": 1}, {"b": float("nan")}])
    second = append_json_lines(path, iter([{"c": [1.5, float("inf")]}]))

    assert (first, second) == (2, 1)
    assert path.read_text() == '{"a": 1}\n{"b": null}\n{"c": [1.5, null]}\n'


def test_append_json_lines_without_rows_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "log.jsonl"

    assert append_json_lines(path, []) == 0

    assert not (tmp_path / "sub").exists()


def test_append_text_creates_the_file_with_the_given_permissions(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    old_umask = os.umask(0o022)
    try:
        append_text(path, "one\n", fsync=True, permissions=0o600)
        append_text(path, "two\n", permissions=0o666)  # an existing file keeps its mode
    finally:
        os.umask(old_umask)

    assert path.read_text() == "one\ntwo\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_append_text_can_refuse_to_create_a_missing_folder(tmp_path: Path) -> None:
    path = tmp_path / "gone" / "server_status.jsonl"

    with pytest.raises(FileNotFoundError):
        append_json_lines(path, [{"v": 1}], make_parent=False)

    assert not (tmp_path / "gone").exists()


WRITER = """
import sys
from pathlib import Path
from fedsys.metrics.writers import append_json_lines
path, who = Path(sys.argv[1]), int(sys.argv[2])
for i in range(40):
    append_json_lines(path, [{"who": who, "i": i, "pad": "x" * 70_000}, {"who": who, "i": -i}])
"""


def test_processes_appending_to_one_file_never_interleave_lines(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(who)], env=env)
        for who in range(4)
    ]
    try:
        codes = [proc.wait(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)

    assert codes == [0, 0, 0, 0]
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 4 * 40 * 2
    # each call's two rows land together (one write), each writer's calls in the order made
    firsts, seconds = rows[::2], rows[1::2]
    pairs = [
        (a["who"], a["i"], b["who"], b["i"], "pad" in b)
        for a, b in zip(firsts, seconds, strict=True)
    ]
    assert all(w1 == w2 and i2 == -i1 and not padded for w1, i1, w2, i2, padded in pairs)
    for who in range(4):
        assert [i for w, i, *_ in pairs if w == who] == list(range(40))


def test_read_json_file_is_empty_before_the_file_and_names_a_corrupt_one(tmp_path) -> None:
    from fedsys.metrics.writers import read_json_file

    path = tmp_path / "ledger.json"
    assert read_json_file(path, "privacy ledger") == {}
    atomic_write_text(path, '{"charges": [1]}')
    assert read_json_file(path, "privacy ledger") == {"charges": [1]}
    path.write_text('{"charges": [')
    with pytest.raises(ValueError, match=r"^privacy ledger .*ledger\.json is corrupt: "):
        read_json_file(path, "privacy ledger")

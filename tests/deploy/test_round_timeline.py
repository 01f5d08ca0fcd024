"""A real deployment's per-round client timeline: phases the server measured, in order."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from fedsys.deploy.round_timeline import measured_row
from tests.deploy.harness import provision, rounds_done, write_config
from tests.deploy.rogue import run_held_round

MS = 0.0015  # every time in a row is rounded to the millisecond


def _timelines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "clients.jsonl").read_text().splitlines()]


def _marks(row: list[Any]) -> dict[str, float]:
    """A row's instants on the round's clock (the phases are contiguous from launch)."""
    _, launch, download, compute, upload, _, end, assigned = row
    return {
        "assigned": assigned,
        "download_start": launch,
        "download_end": launch + download,
        "upload_start": launch + download + compute,
        "upload_end": launch + download + compute + upload,
        "end": end,
    }


def test_a_completed_task_has_contiguous_phases_from_its_download() -> None:
    marks = {"download_start": 0.5, "download_end": 0.75, "upload_start": 3.0, "upload_end": 3.5}
    row = measured_row(7, 0.25, marks, "completed", 3.75)
    assert row == [7, 0.5, 0.25, 2.25, 0.5, "c", 3.75, 0.25]


def test_a_client_dropped_while_training_is_cut_at_the_drop() -> None:
    marks = {"download_start": 0.5, "download_end": 1.0}
    row = measured_row(3, 0.0, marks, "dropped", 2.5)
    assert row == [3, 0.5, 0.5, 1.5, 0.0, "d", 2.5, 0.0]


def test_a_client_dropped_mid_download_has_only_the_download_up_to_the_drop() -> None:
    row = measured_row(3, 0.0, {"download_start": 0.5}, "dropped", 2.0)
    assert row == [3, 0.5, 1.5, 0.0, 0.0, "d", 2.0, 0.0]


def test_a_client_that_reached_no_phase_starts_at_its_assignment() -> None:
    row = measured_row(4, 0.25, {}, "straggled", 6.0)
    assert row == [4, 0.25, 0.0, 0.0, 0.0, "s", 6.0, 0.25]


def test_marks_after_the_end_are_cut_there() -> None:
    """A straggler's upload still running when the round was recorded ends with it."""
    marks = {"download_start": 0.5, "download_end": 1.0, "upload_start": 5.0}
    row = measured_row(2, 0.0, marks, "straggled", 4.0)
    assert row == [2, 0.5, 0.5, 3.0, 0.0, "s", 4.0, 0.0]


@pytest.mark.timeout(300)
def test_a_deployment_records_each_clients_measured_phases_in_order(tmp_path, processes):
    """Over-commitment selects 4 for K=3: three real clients download, train and upload;
    a fourth downloads its model and loses its link while training: dropped, its row
    cut at the drop. Every row comes from the server's own clock."""
    pki = provision(tmp_path / "pki", 4)
    out = tmp_path / "out"
    start_file = tmp_path / "start_at"
    config = write_config(
        tmp_path / "run.yaml",
        out,
        pki,
        rounds=1,
        clients_per_round=3,
        dataset__num_clients=4,
        model={"name": "mlp", "hidden": [1024, 1024]},  # 4.5 MB: transfers take ms
        train={"local_steps": 20, "batch_size": 20, "lr": 0.1},
        round={"mode": "sync", "overcommit": 1.3},
        deploy__min_clients=4,
    )
    (rogue,) = run_held_round(
        processes, config, pki, 3, {"client-0003": {"vanish_after_download": True}}, start_file
    )
    assert rogue.got_task.is_set()
    (record,) = rounds_done(out)
    assert "timeline" not in record  # the timeline lives in clients.jsonl only
    (entry,) = _timelines(out)
    assert entry["round_idx"] == 0 and entry["v"] == 1 and entry["clock"] == "server"
    assert entry["available"] == 4
    round_end = entry["end_s"] - entry["start_s"]
    assert record["end_s"] == pytest.approx(entry["end_s"], abs=MS)
    outcomes = {c["client_id"]: c["outcome"] for c in record["clients"]}
    assert outcomes == {0: "completed", 1: "completed", 2: "completed", 3: "dropped"}
    rows = {row[0]: row for row in entry["clients"]}
    assert sorted(rows) == [0, 1, 2, 3]
    assert {c: row[5] for c, row in rows.items()} == {0: "c", 1: "c", 2: "c", 3: "d"}

    for client in (0, 1, 2):
        marks = _marks(rows[client])
        order = [*marks.values(), round_end]
        assert all(a <= b + MS for a, b in itertools.pairwise(order)), (client, marks)
        assert marks["assigned"] >= 0
        _, _, download, compute, upload, *_ = rows[client]
        assert download > 0 and compute > 0 and upload > 0, rows[client]
    # The third arrival closed the round: the closer's update came last of the three.
    closer = entry["closed_by"]
    assert closer in (0, 1, 2)
    assert rows[closer][6] == max(rows[c][6] for c in (0, 1, 2))

    dropped = _marks(rows[3])
    _, _, download, compute, upload, *_ = rows[3]
    assert dropped["assigned"] <= dropped["download_start"] + MS
    assert download > 0  # it read its whole model before it vanished
    assert upload == 0  # it never uploaded
    # Cut at the drop: its compute runs from the model's arrival to the lost link.
    assert dropped["upload_end"] == pytest.approx(dropped["end"], abs=2 * MS)
    assert dropped["end"] <= round_end + MS
    (why,) = [c["reason"] for c in record["clients"] if c["client_id"] == 3]
    assert why == "connection lost before its update arrived"


@pytest.mark.timeout(300)
def test_a_secure_rounds_timeline_measures_the_masked_upload(tmp_path, processes):
    """With secure aggregation the upload is the masked input's stream: its clients'
    rows have the same ordered phases (the key exchange and unmasking are the round's)."""
    pki = provision(tmp_path / "pki", 3)
    out = tmp_path / "out"
    config = write_config(
        tmp_path / "run.yaml",
        out,
        pki,
        rounds=1,
        clients_per_round=3,
        dataset__num_clients=3,
        model={"name": "mlp", "hidden": [512, 512]},  # 1.2 MB: transfers take ms
        train={"local_steps": 20, "batch_size": 20, "lr": 0.1},
        deploy__secure_aggregation="secagg",
    )
    server, port = processes.server(config, tmp_path / "port")
    for index in range(3):
        processes.client(port, pki, index)
    assert server.wait(timeout=240) == 0, processes.log("server")
    (record,) = rounds_done(out)
    assert record["secure_aggregation"]["inputs"] == 3, record
    (entry,) = _timelines(out)
    round_end = entry["end_s"] - entry["start_s"]
    assert sorted(row[0] for row in entry["clients"]) == [0, 1, 2]
    for row in entry["clients"]:
        assert row[5] == "c", row
        order = [*_marks(row).values(), round_end]
        assert all(a <= b + MS for a, b in itertools.pairwise(order)), row
        _, _, download, compute, upload, *_ = row
        assert download > 0 and compute > 0 and upload > 0, row
    assert entry["closed_by"] in (0, 1, 2)

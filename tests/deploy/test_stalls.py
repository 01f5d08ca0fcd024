"""Faults a real fleet brings to a sync round: silent and slow uploaders, killed clients.

A real server process with two upload slots, three real client processes, and three
hand-written gRPC clients with valid tokens (:mod:`tests.deploy.rogue`): two start
their granted upload and go silent, one trickles a chunk a second. They must not hold
the round: each is cut at its deadline, recorded ``dropped`` with the reason, and the
round aggregates the real clients' updates.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.deploy.harness import provision, rounds_done, write_config
from tests.deploy.rogue import RogueClient, RogueFleet, run_held_round

IDLE_S = 2.0
MIN_RATE = 20_000.0  # bytes/s: the digits MLP's 19,240-byte update may take 2 + 0.96 s
UPDATE_BYTES = (64 * 64 + 64 + 64 * 10 + 10) * 4


@pytest.mark.timeout(300)
def test_silent_and_slow_uploaders_do_not_hold_a_sync_round(tmp_path, processes):
    pki = provision(tmp_path / "pki", 6)
    out = tmp_path / "out"
    start_file = tmp_path / "start_at"
    config = write_config(
        tmp_path / "run.yaml",
        out,
        pki,
        rounds=3,
        clients_per_round=6,
        eval={"every": 1},
        dataset__num_clients=6,
        deploy__min_clients=3,
        deploy__upload_slots=2,
        deploy__chunk_bytes=1024,
        deploy__round_timeout_s=120.0,
        deploy__transfer_idle_s=IDLE_S,
        deploy__transfer_min_bytes_per_s=MIN_RATE,
        deploy__upload_lend_after_s=0.2,
    )
    rogues = {
        "client-0003": {"chunks_then_silence": 2, "from_round": 1},
        "client-0004": {"chunks_then_silence": 1, "from_round": 1},
        "client-0005": {"gap_s": 1.0, "from_round": 1},  # ~1 kB/s, never silent for 2 s
    }
    slow = run_held_round(processes, config, pki, 3, rogues, start_file)[2]
    warmup, stalled, normal = rounds_done(out)
    assert warmup["participants"] == 6  # round 0: the rogues behave (and torch warms up)
    assert stalled["selected"] == 6 and stalled["participants"] == 3, stalled
    assert stalled["aggregated"]
    outcomes = {c["client_id"]: c for c in stalled["clients"]}
    assert {c: outcomes[c]["outcome"] for c in range(6)} == {
        0: "completed",
        1: "completed",
        2: "completed",
        3: "dropped",
        4: "dropped",
        5: "dropped",
    }
    assert "no chunk for 2 s" in outcomes[3]["reason"]
    assert "no chunk for 2 s" in outcomes[4]["reason"]
    assert "slower than 20000 bytes/s" in outcomes[5]["reason"]
    # The stallers were granted the two slots first (they upload at once, the real
    # clients download and train first) and lent them while quiet: the real updates
    # came in before the silent uploads were cut.
    assert all(outcomes[c]["duration_s"] < IDLE_S for c in range(3)), outcomes
    assert slow.chunks_sent < UPDATE_BYTES // 1024  # cut before its last chunk
    assert slow.verdict is None or not slow.verdict[0]
    # Round 2 has the three real clients only: the normal round time. The stalled
    # round may exceed it by the inactivity deadline (and the slow sender's bytes at
    # the minimum rate), never by the round timeout.
    assert normal["participants"] == 3
    limit_s = IDLE_S + UPDATE_BYTES / MIN_RATE + normal["duration_s"] + 3.0
    assert stalled["duration_s"] <= limit_s, (stalled["duration_s"], normal["duration_s"])


@pytest.mark.timeout(300)
def test_a_client_whose_link_is_lost_before_it_uploads_is_dropped(tmp_path, processes):
    """Over-commitment selects 4 for K=3: the round would close at 3 updates with the
    fourth a straggler; it lost its link before uploading, so it is dropped, with why."""
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
        round={"mode": "sync", "overcommit": 1.3},
        deploy__min_clients=4,
    )
    (rogue,) = run_held_round(
        processes, config, pki, 3, {"client-0003": {"vanish": True}}, start_file
    )
    assert rogue.got_task.is_set()
    (record,) = rounds_done(out)
    assert record["selected"] == 4 and record["participants"] == 3, record
    assert record["dropouts"] == 1 and record["stragglers"] == 0, record
    (entry,) = [c for c in record["clients"] if c["client_id"] == 3]
    assert entry["outcome"] == "dropped"
    assert entry["reason"] == "connection lost before its update arrived"


def _events(log: str, message: str) -> list[dict]:
    rows = []
    for line in log.splitlines():
        if line.startswith("{") and f'"msg": "{message}"' in line:
            rows.append(json.loads(line))
    return rows


@pytest.mark.timeout(300)
def test_a_client_reconnecting_with_its_token_replaces_its_hung_session_at_once(
    tmp_path, processes
):
    """Client 2 hangs on its round-1 task with its link alive; a new process with the
    same token registers: the old session ends at once (its task a dropout), and the
    new process takes part in the next round."""
    pki = provision(tmp_path / "pki", 3)
    out = tmp_path / "out"
    config = write_config(
        tmp_path / "run.yaml",
        out,
        pki,
        rounds=3,
        clients_per_round=3,
        dataset__num_clients=3,
        deploy__min_clients=3,
    )
    server, port = processes.server(config, tmp_path / "port")
    for index in range(2):
        processes.client(port, pki, index)
    hung = RogueClient(f"127.0.0.1:{port}", pki, "client-0002", hang=True, from_round=1)
    fleet = RogueFleet([hung])
    try:
        assert hung.got_task.wait(240), hung.error  # round 1's task: it hangs on it
        processes.client(port, pki, 2)  # the device's new process, same token
        assert hung.session_ended.wait(120)
        assert server.wait(timeout=240) == 0, processes.log("server")
    finally:
        fleet.close()
    records = rounds_done(out)
    assert [r["participants"] for r in records] == [3, 2, 3], records
    (entry,) = [c for c in records[1]["clients"] if c["client_id"] == 2]
    assert entry["outcome"] == "dropped"
    log = (tmp_path / "logs" / "server.log").read_text()
    joins = _events(log, "client registered")
    registered = [e["ts"] for e in joins if e["client"] == "client-0002"]
    finished = [e["ts"] for e in _events(log, "round finished") if e["round"] == 1]
    assert len(registered) == 2 and len(finished) == 1
    assert 0 <= finished[0] - registered[1] < 2.0  # replaced at once, not after a timeout


@pytest.mark.timeout(300)
def test_a_client_that_stops_reading_its_model_is_cut_and_dropped(tmp_path, processes):
    """A 17 MB model: a client that reads one chunk and stops backs up the server's
    writes (flow control); the download is cut at its inactivity deadline, its slot
    freed, the client dropped with the reason; the round does not wait for it."""
    pki = provision(tmp_path / "pki", 1)
    out = tmp_path / "out"
    config = write_config(
        tmp_path / "run.yaml",
        out,
        pki,
        rounds=1,
        clients_per_round=1,
        dataset__num_clients=1,
        model={"name": "mlp", "hidden": [2048, 2048]},
        deploy__download_slots=1,
        deploy__round_timeout_s=120.0,
        deploy__transfer_idle_s=IDLE_S,
    )
    server, port = processes.server(config, tmp_path / "port")
    reader = RogueClient(f"127.0.0.1:{port}", pki, "client-0000", stall_download=True)
    fleet = RogueFleet([reader])
    try:
        assert reader.got_task.wait(120), reader.error
        started = time.monotonic()
        assert server.wait(timeout=120) == 0, processes.log("server")
        waited_s = time.monotonic() - started
    finally:
        fleet.close()
    (record,) = rounds_done(out)
    (entry,) = record["clients"]
    assert entry["outcome"] == "dropped" and record["participants"] == 0, record
    assert entry["reason"].startswith("model download stalled: no chunk for 2 s"), entry
    assert waited_s < 30  # the deadline, evaluation and finish_grace_s; not round_timeout_s

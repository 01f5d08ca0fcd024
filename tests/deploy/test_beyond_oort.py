"""Adaptive local work and late updates in a real deployment (``round.local_work``,
``round.late_updates``): one server process and three emulated devices, fast, medium
and slow, in one host process.

The server sets each device's steps from the speeds it reported with the simulator's
idle-time rule, the devices train that many steps (and report the samples), the slow
device uploads a top-k share of its update, and that update, late for its round, is
aggregated into the next one with the configured staleness weight.
"""

from __future__ import annotations

import numpy as np
import pytest

from fedsys.aggregation.compression import top_k_count
from fedsys.parts.rules import idle_time_steps
from fedsys.traces import DeviceFleet, save_fleet
from tests.deploy.harness import provision, rounds_done, write_config

COMPUTE_S_PER_SAMPLE = np.array([0.0005, 0.002, 0.02])  # fast, medium, slow
BASE_STEPS, BATCH, MAX_FACTOR = 2, 20, 3.0
FAST, MEDIUM, SLOW = 0, 1, 2
NUM_PARAMS = 64 * 64 + 64 + 64 * 10 + 10  # digits MLP, hidden [64]
DENSE_BYTES, MIN_SHARE = 4 * NUM_PARAMS, 0.1


def _fleet(tmp_path):
    fleet = DeviceFleet(
        compute_s_per_sample=COMPUTE_S_PER_SAMPLE,
        down_bytes_per_s=np.full(3, 1e8),
        up_bytes_per_s=np.full(3, 1e8),
        period_s=np.zeros(3),
        avail_offsets=np.zeros(4, dtype=np.int64),  # period 0: always online
        avail_starts=np.zeros(0),
        avail_ends=np.zeros(0),
    )
    return save_fleet(fleet, tmp_path / "fleet.csv")


def _expected_steps(clients: list[int]) -> dict[int, int]:
    """The idle-time rule on the chosen devices' step times (transfers are ~0.2 ms)."""
    step_s = BATCH * COMPUTE_S_PER_SAMPLE[clients]
    zeros = np.zeros(len(clients))
    steps, _ = idle_time_steps(BASE_STEPS, MAX_FACTOR, zeros, step_s, arrivals=2)
    return dict(zip(clients, steps.tolist(), strict=True))


@pytest.mark.timeout(300)
def test_local_steps_follow_speed_and_late_updates_join_the_next_round(tmp_path, processes):
    # fast idles 0.06 s of the medium's 0.08 s: 3x the steps (the cap)
    assert _expected_steps([FAST, MEDIUM, SLOW]) == {FAST: 6, MEDIUM: 2, SLOW: 2}
    pki = provision(tmp_path / "pki", 3)
    traces = _fleet(tmp_path)
    out = tmp_path / "out"
    config = write_config(
        tmp_path / "run.yaml",
        out,
        pki,
        rounds=4,
        clients_per_round=2,
        dataset={"name": "digits", "num_clients": 3, "partition": {"kind": "iid"}},
        train={"local_steps": BASE_STEPS, "batch_size": BATCH, "lr": 0.1},
        devices={
            "source": "file",
            "path": str(traces),
            "always_available": True,
            "model_cost_ratio": 1.0,
        },
        round={
            "mode": "sync",
            "overcommit": 1.5,
            "local_work": {
                "mode": "idle_time",
                "max_factor": MAX_FACTOR,
                "partial_upload": True,
                "min_upload_fraction": MIN_SHARE,
            },
            "late_updates": {"curve": "polynomial", "exponent": 1.0},
        },
        eval={"every": 10},
    )
    server, port = processes.server(config, tmp_path / "port")
    processes.spawn(
        "devices",
        "client", "--server", f"127.0.0.1:{port}", "--ca", str(pki / "ca.pem"),
        "--token-dir", str(pki / "clients"), "--profile", "0-2",
        "--traces", str(traces), "--config", str(config),
    )  # fmt: skip
    assert server.wait(timeout=240) == 0, processes.log("server") + processes.log("devices")
    records = rounds_done(out)
    assert len(records) == 4

    seen = {}
    for record in records:  # round 0 may start before every device subscribed
        expected = _expected_steps([c["client_id"] for c in record["clients"]])
        for client in record["clients"]:
            cid = client["client_id"]
            assert client["local_steps"] == expected[cid], record
            seen[cid] = client
            if client["outcome"] == "completed":  # trained exactly the steps it was told
                assert client["samples_processed"] == expected[cid] * BATCH, record
    assert set(seen) == {FAST, MEDIUM, SLOW}
    full = [r for r in records if len(r["clients"]) == 3]
    assert full, records
    for record in full:
        steps = {c["client_id"]: c["local_steps"] for c in record["clients"]}
        assert steps == {FAST: 6, MEDIUM: 2, SLOW: 2}, record
        # the slow one cannot arrive by the target: it sends the smallest top-k share
        shares = {c["client_id"]: c["upload_fraction"] for c in record["clients"]}
        assert shares == {FAST: 1.0, MEDIUM: 1.0, SLOW: MIN_SHARE}, record

    # the slow device straggles (K = 2 of 3) and its update joins a later round
    straggled = {(r["round_idx"], c["client_id"]) for r in records for c in r["clients"]
                 if c["outcome"] == "straggled"}  # fmt: skip
    assert any(cid == SLOW for _, cid in straggled), records
    folded = [(r["round_idx"], cid, s, w) for r in records if "late" in r
              for (cid, s), w in zip(r["late"], r["late_weights"], strict=True)]  # fmt: skip
    assert any(cid == SLOW for _, cid, _, _ in folded), records
    for round_idx, cid, staleness, weight in folded:
        assert staleness >= 1 and (round_idx - staleness, cid) in straggled
        assert weight == pytest.approx((1 + staleness) ** -1.0)  # polynomial, exponent 1
    share = {(r["round_idx"], c["client_id"]): c["upload_fraction"]
             for r in records for c in r["clients"]}  # fmt: skip
    for record in (r for r in records if "late" in r):
        on_time = [c for c in record["clients"] if c["outcome"] == "completed"]
        assert record["participants"] == len(on_time)
        late_bytes = [
            DENSE_BYTES if share[key] == 1 else 8 * top_k_count(NUM_PARAMS, share[key])
            for key in ((record["round_idx"] - s, cid) for cid, s in record["late"])
        ]
        # what the server received and decoded: dense on time, the late ones' top-k
        on_time_bytes = sum(
            DENSE_BYTES
            if c["upload_fraction"] == 1
            else 8 * top_k_count(NUM_PARAMS, c["upload_fraction"])
            for c in on_time
        )
        assert record["bytes_up"] == on_time_bytes + sum(late_bytes), record


def test_partial_uploads_over_another_codec_are_refused_in_one_line(tmp_path, processes):
    pki = provision(tmp_path / "pki", 1)
    config = write_config(
        tmp_path / "run.yaml",
        tmp_path / "out",
        pki,
        round={"mode": "sync", "local_work": {"mode": "idle_time", "partial_upload": True}},
        compression={"name": "int8"},
    )
    server = processes.spawn("server", "server", str(config), "--port", "0")
    assert server.wait(timeout=120) == 1
    said = processes.log("server")
    assert "partial_upload needs compression.name none" in said, said
    assert "Traceback" not in said, said


def test_a_client_the_server_knows_nothing_of_keeps_the_configured_steps():
    """No reported speed and no measured round: NaN times neither move nor set the target."""
    nan = float("nan")
    transfers = np.array([0.0, nan, 0.0])
    step_s = np.array([0.01, nan, 0.04])
    steps, target_s = idle_time_steps(2, 3.0, transfers, step_s, arrivals=2)
    assert steps.tolist() == [6, 2, 2] and target_s == pytest.approx(0.08)
    steps, target_s = idle_time_steps(2, 3.0, np.full(2, nan), np.full(2, nan), arrivals=1)
    assert steps.tolist() == [2, 2] and np.isnan(target_s)

"""A real server and a real emulated-device client process (``fedsys client --profile``).

One run checks the three behaviours of an emulated device against its profile: compute
paced to samples x seconds per sample, transfers shaped to bandwidth and latency, and
an offline window of its availability trace that disconnects it (a dropout the server
records) until the trace brings it back.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from fedsys.deploy.emulation import ready_marker
from fedsys.traces import DeviceFleet, save_fleet
from tests.deploy.harness import provision, rounds_done, wait_for, write_config

COMPUTE_S_PER_SAMPLE = 0.003  # x 200 samples = 0.6 s a round
MODEL_BYTES = (64 * 64 + 64 + 64 * 10 + 10) * 4
DOWN_S, UP_S, LATENCY_S = 0.35, 0.45, 0.05
OFFLINE = (6.0, 9.0)


def _fleet(tmp_path):
    """Device 0 is online from 0 to 6 s and from 9 s on (period 1000 s)."""
    fleet = DeviceFleet(
        compute_s_per_sample=np.array([COMPUTE_S_PER_SAMPLE, 0.1]),
        down_bytes_per_s=np.array([MODEL_BYTES / (DOWN_S - LATENCY_S), 1e6]),
        up_bytes_per_s=np.array([MODEL_BYTES / (UP_S - LATENCY_S), 1e6]),
        period_s=np.array([1000.0, 0.0]),
        avail_offsets=np.array([0, 2, 2]),
        avail_starts=np.array([0.0, OFFLINE[1]]),
        avail_ends=np.array([OFFLINE[0], 1000.0]),
    )
    return save_fleet(fleet, tmp_path / "fleet.csv")


@pytest.mark.timeout(240)
@pytest.mark.timing
def test_emulated_device_paces_shapes_and_follows_its_availability(tmp_path, processes):
    pki = provision(tmp_path / "pki", 2)
    traces = _fleet(tmp_path)
    output = tmp_path / "run"
    config = write_config(
        tmp_path / "run.yaml",
        output,
        pki,
        rounds=6,
        clients_per_round=1,
        dataset__num_clients=2,
        devices={
            "source": "file",
            "path": str(traces),
            "always_available": False,
            "model_cost_ratio": 1.0,
        },
        deploy__min_clients=1,
        eval__every=10,
    )
    epoch_file = tmp_path / "epoch"
    timings = tmp_path / "timings.jsonl"
    _, port = processes.server(config, tmp_path / "port", "--start-at-file", str(epoch_file))
    processes.spawn(
        "device",
        "client", "--server", f"127.0.0.1:{port}", "--ca", str(pki / "ca.pem"),
        "--token-file", str(pki / "clients" / "client-0000.token"),
        "--profile", "0", "--traces", str(traces), "--config", str(config),
        "--epoch-file", str(epoch_file), "--timings", str(timings),
        "--latency-ms", str(LATENCY_S * 1000),
    )  # fmt: skip
    wait_for(ready_marker(epoch_file, 0).is_file, 120, "the device to be ready")
    epoch_file.write_text(f"{time.time() + 1.0!r}\n")
    rows = wait_for(lambda: len(rounds_done(output)) >= 6 and rounds_done(output), 120, "rounds")

    tasks = [json.loads(line) for line in timings.read_text().splitlines()]
    done = [t for t in tasks if t["accepted"]]
    assert len(done) >= 4, processes.log("device")
    for task in done:
        assert task["target_compute_s"] == pytest.approx(200 * COMPUTE_S_PER_SAMPLE)
        assert task["compute_s"] == pytest.approx(task["target_compute_s"], rel=0.10)
        assert task["target_download_s"] == pytest.approx(DOWN_S)
        assert task["download_s"] == pytest.approx(DOWN_S, rel=0.10)
        assert task["upload_s"] == pytest.approx(UP_S, rel=0.10)
    # going offline ends the round without it: a dropout, or (cut mid-upload) an
    # update the server refuses as incomplete
    lost = [r for r in rows if r["participants"] == 0]
    assert len(lost) == 1 and lost[0]["dropouts"] + lost[0]["rejected"] == 1
    assert lost[0]["end_s"] == pytest.approx(OFFLINE[0], abs=0.3)  # its disconnect closed it
    back = rows[rows.index(lost[0]) + 1]
    assert OFFLINE[1] - 0.05 <= back["start_s"] <= OFFLINE[1] + 1.5  # reconnected on time
    assert back["participants"] == 1
    server_log = (processes.log_dir / "server.log").read_text()
    assert server_log.count('"client disconnected"') == 1
    assert server_log.count('"client registered"') == 2

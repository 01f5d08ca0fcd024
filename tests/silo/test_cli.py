"""``fedsys silo``: clear one-line errors, and the shaper as a real process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from fedsys.cli import main
from fedsys.silo.local_federation import child_env


def test_site_with_a_missing_dataset_fails_with_one_line(tmp_path, capsys):
    token = tmp_path / "site-0.token"
    token.write_text("t0k3n\n")
    status = main(["silo", "site", "--coordinator", "127.0.0.1:1", "--token-file", str(token),
                   "--insecure", "--data", f"d0={tmp_path / 'missing.npz'}"])
    err = " ".join(capsys.readouterr().err.split())  # rich may wrap a long path
    assert status == 1
    assert err == f"error: dataset 'd0': no file {tmp_path / 'missing.npz'}"


def test_coordinator_refuses_to_run_without_tls_unless_told(tmp_path, capsys):
    status = main(["silo", "coordinator", "--tokens", str(tmp_path / "tokens.json"),
                   "--sites", "1"])
    assert status == 1
    assert "TLS is on by default" in capsys.readouterr().err


def test_shaper_target_must_be_host_and_port(capsys):
    assert main(["silo", "shaper", "--target", "nowhere"]) == 1
    assert "--target must look like HOST:PORT" in capsys.readouterr().err


def _echo_server() -> tuple[socket.socket, int]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


@pytest.mark.timing
def test_shaper_process_delays_a_round_trip_by_its_rtt(tmp_path):
    server, port = _echo_server()
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedsys.cli", "silo", "shaper", "--target", f"127.0.0.1:{port}",
         "--rtt-ms", "80", "--port-file", str(port_file)],
        env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the shaper did not report its port"
            time.sleep(0.05)
        proxy_port = int(port_file.read_text())
        with socket.create_connection(("127.0.0.1", proxy_port), timeout=10) as conn:
            rtts = []
            for _ in range(5):
                start = time.perf_counter()
                conn.sendall(b"ping")
                assert conn.recv(16) == b"ping"
                rtts.append(time.perf_counter() - start)
        assert sorted(rtts)[2] == pytest.approx(0.08, rel=0.10)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        server.close()
    said = proc.stdout.read().decode() if proc.stdout else ""
    assert "40 ms one-way, no rate limit each way" in said  # in words, not a repr
    assert "LinkSettings" not in said


def test_links_are_described_in_words():
    from fedsys.cli.silo import describe_link
    from fedsys.silo.shaper import LinkSettings

    assert describe_link(LinkSettings.symmetric(0.1)) == "50 ms one-way, no rate limit"
    assert describe_link(LinkSettings.symmetric(0.02, 20e6, 0.005)) == (
        "10 ms one-way, up to 5 ms jitter, 20 Mbit/s")


def test_site_retries_an_absent_coordinator_and_stops_at_once_on_sigterm(tmp_path):
    from fedsys.silo.local_federation import write_site_data

    data = write_site_data(tmp_path / "d0.npz", seed=0, rows=100, samples=8, features=2)
    token = tmp_path / "site-0.token"
    token.write_text("t0k3n\n")
    closed = socket.socket()  # bound, never listening: connections are refused
    closed.bind(("127.0.0.1", 0))
    log = tmp_path / "site.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fedsys.cli", "silo", "site", "--coordinator",
             f"127.0.0.1:{closed.getsockname()[1]}", "--token-file", str(token), "--insecure",
             "--data", str(data), "--workers", "1"],
            env=child_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while "reconnecting" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the site never tried to connect"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        lines = [line for line in log.read_text().splitlines() if "reconnecting" in line]
        assert "UNAVAILABLE" in lines[0]  # one line per attempt, with the gRPC reason
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        closed.close()

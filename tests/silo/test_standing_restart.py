"""A standing coordinator process killed with accepted jobs resumes them after a restart.

The coordinator runs as ``fedsys silo coordinator`` (a real process, one job at a time)
and two sites dial it directly; it is killed (SIGKILL: no chance to tidy up) while a
training job runs and a query waits in the queue, then started again on the same port
and state folder. The sites reconnect by themselves, the training job resumes at the
round after its last checkpoint and the queued query is answered.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from fedsys.analytics.catalog import load_sites, write_catalog
from fedsys.analytics.local_sites import TASK_MODULE
from fedsys.analytics.sample_data import write_sample_sites
from fedsys.federation import Federation
from fedsys.federation.local import demo_config, demo_hospitals, write_training_shards
from fedsys.silo.local_federation import site_command
from fedsys.wire import auth
from fedsys.wire.supervise import end_all, end_group, fedsys_command, spawn, wait_for_port
from tests.silo.conftest import past_round

SITES = 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Deployment:
    """A coordinator process and site processes on loopback (plaintext, tokens on)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.coordinator: subprocess.Popen[bytes] | None = None
        self.sites: list[subprocess.Popen[bytes]] = []
        self.starts = 0

    def provision(self) -> None:
        spec = load_sites(write_sample_sites(self.workdir / "tables",
                                             hospitals=demo_hospitals(SITES)))
        self.names = [s.name for s in spec.sites]
        shards = write_training_shards(demo_config(SITES), self.workdir / "data")
        auth.issue_tokens(self.workdir / "pki", self.names)
        auth.issue_tokens(self.workdir / "analysts", ["alice"])
        for i, site in enumerate(spec.sites):
            catalog = write_catalog(self.workdir / "catalogs" / site.name / "tables.json",
                                    site.tables)
            cmd = site_command(f"127.0.0.1:{self.port}",
                               self.workdir / "pki" / "clients" / f"{site.name}.token",
                               {"visits": catalog, "digits": shards[i]}, site.name, 1, 1,
                               None, (TASK_MODULE,))
            self.sites.append(spawn(cmd, self.workdir / "logs" / f"{site.name}.log"))

    def start_coordinator(self) -> None:
        self.starts += 1
        port_file = self.workdir / f"port-{self.starts}"
        cmd = fedsys_command("silo", "coordinator", "--tokens",
                             str(self.workdir / "pki" / "tokens.json"), "--analysts",
                             str(self.workdir / "analysts" / "tokens.json"), "--state-dir",
                             str(self.workdir / "state"), "--port", str(self.port),
                             "--port-file", str(port_file), "--insecure", "--tables",
                             "visits", "--max-active-jobs", "1")
        self.coordinator = spawn(cmd, self.workdir / "logs" / f"coordinator-{self.starts}.log")
        wait_for_port(port_file, self.coordinator, 120, "the coordinator")

    def kill_coordinator(self) -> None:
        assert self.coordinator is not None
        end_group(self.coordinator, term_grace_s=0.0)

    def close(self) -> None:
        end_all([*self.sites, *([self.coordinator] if self.coordinator else [])], 0.0, 5.0)


@pytest.fixture
def deployment(tmp_path) -> Iterator[Deployment]:
    deployed = Deployment(tmp_path)
    try:
        deployed.provision()  # the sites dial until the coordinator listens
        deployed.start_coordinator()
        yield deployed
    finally:
        deployed.close()
        for proc in [*deployed.sites, deployed.coordinator]:
            assert proc is None or proc.poll() is not None


def _wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_a_killed_coordinator_resumes_its_running_and_queued_jobs(deployment):
    alice = Federation(f"127.0.0.1:{deployment.port}",
                       token_file=deployment.workdir / "analysts" / "clients" / "alice.token",
                       insecure=True)
    rounds = 30
    # 1,500 steps: rounds of ~0.5 s on a quiet machine, so the kill lands mid-job.
    config = demo_config(SITES, rounds=rounds,
                         train={"local_steps": 1500, "batch_size": 32, "lr": 0.05})
    training = alice.submit(yaml.safe_dump(config.model_dump(mode="json")))
    query = alice.submit_query("SELECT COUNT(*) AS n FROM visits").job_id
    _wait_for(lambda: past_round(alice, training, 3), 180, "round 3 of the training job")
    assert alice.status(query).state == "queued"

    deployment.kill_coordinator()
    deployment.start_coordinator()
    done = alice.wait(training, timeout_s=300)
    alice.wait(query, timeout_s=120)
    answer = alice.result(query)

    assert done.state == "done"
    assert answer["rows"] == [[3000 + 1200]]
    logs = "\n".join(alice.logs(training))
    assert "requeued after a coordinator restart" in logs
    assert "resumed at round" in logs
    run = deployment.workdir / "state" / "jobs" / training / "run" / "rounds.jsonl"
    indices = [yaml.safe_load(line)["round_idx"] for line in run.read_text().splitlines()]
    assert indices == list(range(rounds))  # no round lost or written twice


def test_a_standing_coordinator_serves_until_sigterm_and_keeps_its_queue(tmp_path):
    deployed = Deployment(tmp_path)
    auth.issue_tokens(tmp_path / "pki", ["hospital-a"])
    auth.issue_tokens(tmp_path / "analysts", ["alice"])
    try:
        deployed.start_coordinator()
        alice = Federation(f"127.0.0.1:{deployed.port}",
                           token_file=tmp_path / "analysts" / "clients" / "alice.token",
                           insecure=True)
        job = alice.submit_query("SELECT COUNT(*) FROM visits")  # no site: it waits
        assert deployed.coordinator is not None
        deployed.coordinator.send_signal(signal.SIGTERM)
        status = deployed.coordinator.wait(timeout=30)
    finally:
        deployed.close()

    saved = json.loads((tmp_path / "state" / "jobs" / job.job_id / "job.json").read_text())
    assert status == 0
    assert saved["state"] in ("queued", "running")  # resumed by the next start

"""A network cut between a site and its standing coordinator: the site comes back by itself.

A real standing ``fedsys silo coordinator`` (TLS, the sites' and the analysts' tokens)
and two real ``fedsys silo site --config site.yaml`` processes; the children's hospital
dials the coordinator through a :class:`tests.netproxy.NetProxy` on another loopback
port. TLS passes through the proxy untouched and the coordinator's certificate names
``127.0.0.1``, so that site still verifies it. The tests cut the link (every connection
reset, every new dial refused), or stall it (nothing passes, nothing closes: only the
coordinator's pings and the site's silence timer can tell), then restore it. The site
process is never restarted: it must come back on its own, and the answers must count its
rows again; a job running at the site when the link goes down follows its policy.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from fedsys.analytics.catalog import load_sites
from fedsys.analytics.local_sites import TASK_MODULE
from fedsys.analytics.sample_data import write_sample_sites
from fedsys.federation import Federation, JobFailedError
from fedsys.federation.demo_sites import add_private_columns, demo_site_rules, write_site_yaml
from fedsys.federation.local import TABLES, demo_config, demo_hospitals, write_training_shards
from fedsys.silo.audit import read_audit
from fedsys.wire import auth, tls
from fedsys.wire.supervise import end_all, fedsys_command, spawn, wait_for_port
from tests.netproxy import NetProxy
from tests.silo.conftest import past_round

SITES = 2
CUT = 1
"""The site behind the proxy (the children's hospital)."""

CUT_S = 3.0
"""How long a cut lasts once the coordinator has lost the site: well past the site's
first retries (0.1 to 0.4 s), so it dials into the cut several times."""

COUNT_SQL = "SELECT COUNT(*) AS n FROM visits"


class Deployment:
    """A standing coordinator process and two site processes, one behind a proxy."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.names: list[str] = []
        self.tables: list[Path] = []
        self.audits: list[Path] = []
        self.sites: list[subprocess.Popen[bytes]] = []
        self.coordinator: subprocess.Popen[bytes] | None = None
        self.proxy: NetProxy | None = None
        self.port = 0

    def start(self) -> None:
        work = self.workdir
        training = demo_config(SITES)
        spec = load_sites(write_sample_sites(work / "tables", hospitals=demo_hospitals(SITES)))
        self.names = [s.name for s in spec.sites]
        shards = write_training_shards(training, work / "data")
        pki = work / "pki"
        auth.issue_tokens(pki, self.names)
        tls.provision(pki, self.names)
        auth.issue_tokens(work / "analysts", ["alice"])
        cmd = fedsys_command(
            "silo", "coordinator", "--tokens", str(pki / auth.TOKENS_FILE), "--certs",
            str(pki), "--analysts", str(work / "analysts" / auth.TOKENS_FILE),
            "--state-dir", str(work / "state"), "--port", "0", "--port-file",
            str(work / "port"), "--tables", TABLES, "--job-timeout-s", "120")
        self.coordinator = spawn(cmd, work / "logs" / "coordinator.log")
        self.port = wait_for_port(work / "port", self.coordinator, 120, "the coordinator")
        self.proxy = NetProxy("127.0.0.1", self.port)
        proxy_port = self.proxy.start()
        for i, site in enumerate(spec.sites):
            table = Path(site.tables["visits"])
            add_private_columns(table, i)
            rules = demo_site_rules(i, site.name, table, TABLES, training.dataset.name,
                                    shards[i])
            rules["coordinator"] = f"127.0.0.1:{proxy_port if i == CUT else self.port}"
            files = write_site_yaml(work / "sites" / site.name, rules)
            self.tables.append(table)
            self.audits.append(files.audit)
            cmd = fedsys_command(
                "silo", "site", "--config", str(files.rules), "--token-file",
                str(pki / "clients" / f"{site.name}.token"), "--ca", str(pki / "ca.pem"),
                "--workers", "1", "--comm-workers", "1", "--tasks", TASK_MODULE,
                module="fedsys.cli")
            self.sites.append(spawn(cmd, work / "logs" / f"{site.name}.log"))
        for name in self.names:
            _wait_for(lambda n=name: self.joined(n) >= 1, 180, f"{name} to connect")

    def events(self, msg: str, site: str) -> list[dict[str, Any]]:
        """The coordinator's log records ``msg`` about ``site``, oldest first."""
        return [r for r in _log(self.workdir / "logs" / "coordinator.log", msg)
                if r.get("site") == site]

    def site_events(self, index: int, msg: str) -> list[dict[str, Any]]:
        """Site ``index``'s log records ``msg``, oldest first."""
        return _log(self.workdir / "logs" / f"{self.names[index]}.log", msg)

    def joined(self, site: str) -> int:
        """How many times ``site`` has connected."""
        return len(self.events("site connected", site))

    def analyst(self) -> Federation:
        return Federation(f"127.0.0.1:{self.port}",
                          token_file=self.workdir / "analysts" / "clients" / "alice.token",
                          ca=self.workdir / "pki" / "ca.pem")

    def close(self) -> None:
        try:
            if self.proxy is not None:
                self.proxy.close()
        finally:
            end_all([*self.sites, *([self.coordinator] if self.coordinator else [])], 0.0, 5.0)


def _log(path: Path, msg: str) -> list[dict[str, Any]]:
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue  # the console's lines beside the JSON logs
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line still being written
        if record.get("msg") == msg:
            found.append(record)
    return found


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Iterator[Deployment]:
    deployed = Deployment(tmp_path_factory.mktemp("netcut"))
    try:
        deployed.start()
        yield deployed
    finally:
        deployed.close()
        for proc in [*deployed.sites, deployed.coordinator]:
            assert proc is None or proc.poll() is not None, "a process outlived its fixture"


@pytest.fixture
def alice(deployment) -> Iterator[Federation]:
    with deployment.analyst() as client:
        yield client


def _wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def _duckdb_count(tables: list[Path]) -> int:
    return sum(int(duckdb.sql(f"SELECT COUNT(*) FROM '{t}'").fetchall()[0][0]) for t in tables)


def _training(rounds: int) -> str:
    """Rounds whose task at each site computes for a second or more (a cut lands in it:
    300 local steps take about 0.2 s on a quiet machine)."""
    config = demo_config(SITES, rounds=rounds,
                         train={"local_steps": 3000, "batch_size": 32, "lr": 0.05})
    return yaml.safe_dump(config.model_dump(mode="json"))


def _cut_during_a_training_task(deployed: Deployment) -> tuple[str, str]:
    """Cut the proxied site's link as soon as it starts a training task (audited ``run``
    before the task computes); the ``(job_id, task_id)`` it was computing."""
    audit = deployed.audits[CUT]
    seen = len(list(read_audit(audit)))
    found: dict[str, tuple[str, str]] = {}

    def started() -> bool:
        records = list(read_audit(audit))[seen:]
        ended = {(r["job_id"], r["task_id"]) for r in records if r["decision"] != "run"}
        for r in records:
            key = (r["job_id"], r["task_id"])
            if r["decision"] == "run" and r["task"] == "silo.train_config" and key not in ended:
                found["task"] = key
                return True
        return False

    _wait_for(started, 120, "a training task at the proxied site")
    assert deployed.proxy is not None
    deployed.proxy.cut()
    return found["task"]


def _hold_the_cut(deployed: Deployment, lost_before: int) -> None:
    """Keep the link cut until the coordinator has lost the site, then ``CUT_S`` more,
    with the site dialling into the cut meanwhile."""
    name, proxy = deployed.names[CUT], deployed.proxy
    assert proxy is not None
    _wait_for(lambda: len(deployed.events("site lost", name)) > lost_before, 30,
              f"the coordinator to lose {name}")
    refused = proxy.resets
    time.sleep(CUT_S)
    assert proxy.resets >= refused + 2, "the site did not dial again during the cut"


def test_a_site_cut_off_reconnects_by_itself_and_its_rows_count_again(deployment, alice):
    deployed, name = deployment, deployment.names[CUT]
    expected = _duckdb_count(deployed.tables)
    assert alice.query(COUNT_SQL, timeout_s=120).rows == [[expected]]
    joined, lost = deployed.joined(name), len(deployed.events("site lost", name))
    assert deployed.proxy is not None

    deployed.proxy.cut()
    try:
        _hold_the_cut(deployed, lost)
    finally:
        deployed.proxy.restore()
    _wait_for(lambda: deployed.joined(name) > joined, 60, f"{name} to reconnect")
    answer = alice.query(COUNT_SQL, timeout_s=120)

    assert answer.rows == [[expected]]  # the cut site's rows are counted again
    assert _duckdb_count(deployed.tables[CUT:CUT + 1]) > 0
    assert deployed.sites[CUT].poll() is None  # the same process: it reconnected itself
    reason = deployed.events("site lost", name)[lost]["reason"]
    assert reason.startswith(("stream error", "stream closed", "stream ended")), reason


def test_a_cut_during_a_training_round_waits_for_the_site_and_the_job_finishes(deployment,
                                                                                 alice):
    deployed, name = deployment, deployment.names[CUT]
    rounds = 4
    job_id = alice.submit(_training(rounds))  # on_site_failure=wait (the default)
    _wait_for(lambda: past_round(alice, job_id, 2), 120, "round 2")
    joined, lost = deployed.joined(name), len(deployed.events("site lost", name))
    assert deployed.proxy is not None

    try:
        _cut_during_a_training_task(deployed)
        _hold_the_cut(deployed, lost)
        assert alice.status(job_id).state == "running"  # waiting for the site, not failed
    finally:
        deployed.proxy.restore()
    _wait_for(lambda: deployed.joined(name) > joined, 60, f"{name} to reconnect")
    info = alice.wait(job_id, timeout_s=120)

    assert info.state == "done"
    logs = "\n".join(alice.logs(job_id))
    assert f"site {name!r} was lost" in logs
    assert "waiting up to" in logs
    assert alice.result(job_id)["summary"]["rounds"] == rounds
    run = deployed.workdir / "state" / "jobs" / job_id / "run" / "rounds.jsonl"
    records = [json.loads(line) for line in run.read_text().splitlines()]
    assert [r["round_idx"] for r in records] == list(range(rounds))
    assert all(r["participants"] == SITES for r in records)  # no round ran without it


def test_a_cut_during_a_training_round_fails_a_fail_policy_job_naming_the_site(deployment,
                                                                               alice):
    deployed, name = deployment, deployment.names[CUT]
    job_id = alice.submit(_training(20), on_site_failure="fail")
    _wait_for(lambda: past_round(alice, job_id, 2), 120, "round 2")
    joined = deployed.joined(name)
    assert deployed.proxy is not None

    try:
        job, task = _cut_during_a_training_task(deployed)
        with pytest.raises(JobFailedError) as failed:
            alice.wait(job_id, timeout_s=60)
    finally:
        deployed.proxy.restore()
    _wait_for(lambda: deployed.joined(name) > joined, 60, f"{name} to reconnect")
    answer = alice.query(COUNT_SQL, timeout_s=120)

    assert task == f"train/{name}"  # the cut came while the site computed its update
    assert failed.value.info.state == "failed"
    error = failed.value.info.error
    assert f"site {name!r} was lost during job {job!r}" in error, error
    assert "on_site_failure=fail" in error
    assert answer.rows == [[_duckdb_count(deployed.tables)]]  # the federation serves on


def test_a_silent_stall_is_noticed_by_both_sides_in_bounded_time_and_heals(deployment, alice):
    deployed, name = deployment, deployment.names[CUT]
    joined, lost = deployed.joined(name), len(deployed.events("site lost", name))
    redials = len(deployed.site_events(CUT, "reconnecting"))
    assert deployed.proxy is not None

    deployed.proxy.stall()  # no reset, no FIN: only timeouts and keepalives can tell
    started = time.monotonic()
    try:
        _wait_for(lambda: len(deployed.events("site lost", name)) > lost, 45,
                  f"the coordinator to notice {name} went silent")
        coordinator_s = time.monotonic() - started
        _wait_for(lambda: len(deployed.site_events(CUT, "reconnecting")) > redials, 45,
                  f"{name} to notice the coordinator went silent")
        site_s = time.monotonic() - started
    finally:
        deployed.proxy.restore()
    _wait_for(lambda: deployed.joined(name) > joined, 60, f"{name} to reconnect")
    answer = alice.query(COUNT_SQL, timeout_s=120)

    # The coordinator drops a site silent for site_timeout_s (15 s: it pings every 0.5 s)
    # and the site redials after coordinator_timeout_s (20 s) without a message. (gRPC's
    # HTTP/2 keepalive is slower: grpc 1.85 ends a transport whose ping goes unanswered
    # after its 60 s ping timeout, not after keepalive_timeout_ms.)
    assert coordinator_s < 35 and site_s < 35, (coordinator_s, site_s)
    reason = deployed.events("site lost", name)[lost]["reason"]
    assert reason.startswith(("silent for", "stream error")), reason
    assert answer.rows == [[_duckdb_count(deployed.tables)]]
    assert deployed.sites[CUT].poll() is None

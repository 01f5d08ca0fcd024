"""A standing federation runs analysts' jobs side by side at the sites.

Real processes on loopback: a standing coordinator and two sample sites with their own
rules (two workers each). One analyst trains for many rounds while another queries:
the query's tasks run at the sites beside the training round's (the sites' audit logs
show both at once) and its answer is exact; a job cancelled while another runs is
dropped at the sites at once and the other finishes with the right answer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import duckdb
import pytest
import yaml

from fedsys.federation.local import demo_config, standing_local
from fedsys.federation.service import FederationSettings
from fedsys.silo.audit import read_audit
from tests.silo.conftest import LoopThread, past_round

SITES = 2
SQL = "SELECT sex, COUNT(*) AS n, SUM(age) AS ages FROM visits GROUP BY sex ORDER BY sex"


@pytest.fixture(scope="module")
def federation(tmp_path_factory) -> Iterator[tuple[Any, Any, Any]]:
    runner = LoopThread()
    workdir = tmp_path_factory.mktemp("concurrent")
    settings = FederationSettings(site_wait_s=90.0, job_timeout_s=120.0,
                                  concurrent_silo_jobs=4)
    context = standing_local(workdir, sites=SITES, workers=2, insecure=True,
                             settings=settings, training=demo_config(SITES))
    standing, cluster, access = runner.run(context.__aenter__(), timeout_s=240)
    try:
        yield standing, cluster, access
    finally:
        runner.run(context.__aexit__(None, None, None), timeout_s=60)
        runner.close()
        for proc in cluster.processes:
            assert proc.poll() is not None, "a site process outlived its fixture"


def _long_training() -> str:
    # 600 rounds: on a quiet machine a round takes tens of ms, 60 could end before a test acts.
    config = demo_config(SITES, rounds=600, train={"local_steps": 400, "batch_size": 32,
                                                    "lr": 0.05})
    return yaml.safe_dump(config.model_dump(mode="json"))


def _wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _expected(access: Any) -> dict[str, tuple[int, int]]:
    """The query's answer from DuckDB over the union of the sites' tables."""
    expected: dict[str, tuple[int, int]] = {}
    for files in access.sites.values():
        table = yaml.safe_load(files.rules.read_text())["sql"]["tables"]["visits"]
        path = table["path"].replace("'", "''")
        for sex, n, ages in duckdb.sql(
            f"SELECT sex, COUNT(*), SUM(age) FROM '{path}' GROUP BY sex"
        ).fetchall():
            count, total = expected.get(sex, (0, 0))
            expected[sex] = (count + n, total + int(ages))
    return expected


def _intervals(access: Any, analyst: str) -> list[tuple[str, float, float]]:
    """(site, admitted, finished) of each task ``analyst``'s jobs ran, from the sites'
    audit logs (``run`` is written when the task is admitted, ``done`` when it ends)."""
    spans: list[tuple[str, float, float]] = []
    for site, files in access.sites.items():
        started: dict[tuple[str, str], float] = {}
        for record in read_audit(files.audit):
            if record["analyst"] != analyst:
                continue
            key = (record["job_id"], record["task_id"])
            if record["decision"] == "run":
                started[key] = record["time"]
            elif record["decision"] in {"done", "failed"} and key in started:
                spans.append((site, started.pop(key), record["time"]))
    return spans


def _overlapping(a: list[Any], b: list[Any]) -> bool:
    return any(x[0] == y[0] and x[1] < y[2] and y[1] < x[2] for x in a for y in b)


def test_a_query_runs_at_the_sites_beside_a_training_round_and_is_exact(federation):
    _, _, access = federation
    alice, bob = access.client("alice"), access.client("bob")
    job_id = alice.submit(_long_training())
    _wait_for(lambda: past_round(alice, job_id, 2), 180, "round 2")

    answers = []
    for _ in range(3):
        answers.append(bob.query(SQL))
        if _overlapping(_intervals(access, "alice"), _intervals(access, "bob")):
            break
    training = alice.status(job_id)
    alice.cancel(job_id)

    expected = _expected(access)
    assert all({sex: (n, ages) for sex, n, ages in a.rows} == expected for a in answers)
    assert training.state == "running"
    # Both analysts' tasks were admitted and computing at one site at the same time.
    assert _overlapping(_intervals(access, "alice"), _intervals(access, "bob"))


def test_a_job_cancelled_while_another_runs_is_dropped_and_the_other_is_exact(federation):
    standing, cluster, access = federation
    alice, bob = access.client("alice"), access.client("bob")
    job_id = alice.submit(_long_training())
    _wait_for(lambda: past_round(alice, job_id, 2), 180, "round 2")

    query = bob.submit_query(SQL)
    alice.cancel(job_id)
    cancelled_at = time.time()
    info = bob.wait(query.job_id, timeout_s=120)
    answer = bob.result(query.job_id)

    assert alice.status(job_id).state == "cancelled"
    assert info.state == "done"
    assert {sex: (n, ages) for sex, n, ages in answer["rows"]} == _expected(access)
    # The training's silo job ended at every site: none of its tasks was admitted after.
    _wait_for(lambda: "alice" not in standing.gate.holders.values(), 30, "the gate to free")
    late = [span for span in _intervals(access, "alice") if span[1] > cancelled_at + 1.0]
    assert late == []
    for name in cluster.names:
        log = (cluster.workdir / "logs" / f"{name}.log").read_text()
        assert '"msg": "job ended"' in log and '"reason": "cancelled"' in log

"""A standing federation whose sites hold different rules, with real site processes.

Two sample hospitals run under their own ``site.yaml`` (the demo's rules: a hidden
``patient_id``, a DP-only ``income`` with the site's own budget per analyst and in total,
a smallest group; the children's hospital also hides ``length_of_stay``, suppresses
groups under 25 stays and trains only ``mlp``). Analysts read each refusal as the site
gave it; DP-only data is charged to the asking analyst in each site's own ledger (read
from the file) and audited there; the coordinator keeps no budget of its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from fedsys.federation import JobRefusedError
from fedsys.federation.demo_sites import INCOME_BOUNDS
from fedsys.federation.local import demo_config, standing_local
from fedsys.federation.service import FederationSettings
from fedsys.silo.audit import read_audit
from tests.silo.conftest import LoopThread

SITES = 2
CHILDRENS = "childrens"
DP_SQL = "SELECT AVG(income) AS income FROM visits"
BOUNDS = {"income": list(INCOME_BOUNDS)}


def _childrens_rules(index: int, rules: dict[str, Any]) -> dict[str, Any]:
    """The children's hospital (site 1) is stricter than the demo's default."""
    if index == 1:
        visits = rules["sql"]["tables"]["visits"]
        visits["columns"] = [c for c in visits["columns"] if c != "length_of_stay"]
        rules["sql"]["min_group_size"] = 25
        rules["training"]["models"] = ["mlp"]
    return rules


@pytest.fixture(scope="module")
def federation(tmp_path_factory) -> Iterator[tuple[Any, Any, Any]]:
    runner = LoopThread()
    workdir = tmp_path_factory.mktemp("standing-rules")
    settings = FederationSettings(site_wait_s=60.0, job_timeout_s=120.0)
    context = standing_local(
        workdir,
        sites=SITES,
        workers=1,
        insecure=True,
        analysts=("alice", "bob", "carol"),
        settings=settings,
        training=demo_config(SITES, rounds=2),
        site_rules=_childrens_rules,
    )
    standing, cluster, access = runner.run(context.__aenter__(), timeout_s=240)
    try:
        yield standing, cluster, access
    finally:
        runner.run(context.__aexit__(None, None, None), timeout_s=60)
        runner.close()
        for proc in cluster.processes:
            assert proc.poll() is not None, "a site process outlived its fixture"


def _charges(ledger: Path) -> list[dict[str, Any]]:
    return json.loads(ledger.read_text())["charges"] if ledger.exists() else []


def _audit(access: Any, site: str) -> list[dict[str, Any]]:
    return list(read_audit(access.sites[site].audit))


def test_each_site_writes_its_own_rules(federation):
    _, cluster, access = federation

    rules = {name: yaml.safe_load(access.sites[name].rules.read_text()) for name in cluster.names}

    assert set(rules) == set(cluster.names) == set(access.sites)
    assert rules["city_general"]["sql"]["min_group_size"] == 10
    assert rules[CHILDRENS]["sql"]["min_group_size"] == 25
    assert "patient_id" not in rules["city_general"]["sql"]["tables"]["visits"]["columns"]
    assert "length_of_stay" not in rules[CHILDRENS]["sql"]["tables"]["visits"]["columns"]
    assert all(r["sql"]["tables"]["visits"]["dp_columns"] == ["income"] for r in rules.values())


def test_an_exact_query_has_each_sites_smallest_group_applied(federation):
    _, _, access = federation
    sql = "SELECT diagnosis, COUNT(*) AS n FROM visits GROUP BY diagnosis ORDER BY diagnosis"
    expected: dict[str, int] = {}
    for site, minimum in (("city_general", 10), (CHILDRENS, 25)):
        table = yaml.safe_load(access.sites[site].rules.read_text())["sql"]["tables"]["visits"]
        path = table["path"].replace("'", "''")
        for diagnosis, n in duckdb.sql(
            f"SELECT diagnosis, COUNT(*) FROM '{path}' GROUP BY diagnosis"
        ).fetchall():
            if n >= minimum:
                expected[diagnosis] = expected.get(diagnosis, 0) + n

    answer = access.client("alice").query(sql)

    assert {d: n for d, n in answer.rows} == expected
    path = yaml.safe_load(access.sites[CHILDRENS].rules.read_text())["sql"]["tables"]["visits"][
        "path"
    ]
    small = duckdb.sql(f"SELECT COUNT(*) FROM '{path}' WHERE diagnosis = 'cardiac'").fetchall()
    assert 0 < small[0][0] < 25  # suppressed at the children's hospital


def test_a_hidden_column_is_refused_with_the_sites_reason(federation, capsys):
    from fedsys.cli import main

    standing, _, access = federation
    alice = access.client("alice")

    with pytest.raises(JobRefusedError) as refused:
        alice.query("SELECT AVG(length_of_stay) AS days FROM visits")
    job_id = refused.value.info.job_id
    assert (
        main(
            [
                "jobs",
                "status",
                job_id,
                "--coordinator",
                access.address,
                "--token-file",
                str(access.analysts["alice"]),
                "--insecure",
                "--json",
            ]
        )
        == 0
    )
    status = json.loads(capsys.readouterr().out)[0]

    reason = (
        "refused by site childrens: column(s) length_of_stay of table visits may "
        "not be read at this site"
    )
    assert reason in str(refused.value)
    assert status["state"] == "failed"
    assert status["error"] == reason
    assert status["refused"] == [reason.removeprefix("refused by ")]
    audited = [
        r
        for r in _audit(access, CHILDRENS)
        if r["job_id"].startswith(job_id) or r["decision"] == "refused"
    ]
    assert any(
        r["decision"] == "refused" and r["analyst"] == "alice" and "length_of_stay" in r["reason"]
        for r in audited
    )
    assert standing.store.jobs[job_id].refused == status["refused"]


def test_an_exact_answer_on_a_dp_only_column_is_refused(federation):
    _, _, access = federation

    with pytest.raises(JobRefusedError) as refused:
        access.client("bob").query("SELECT AVG(income) AS income FROM visits")

    assert "income may only be released with differential privacy" in str(refused.value)
    assert refused.value.refused and refused.value.refused[0].startswith("site ")


def test_dp_queries_are_charged_to_each_analyst_in_the_sites_own_ledgers(federation):
    standing, cluster, access = federation
    alice, bob = access.client("alice"), access.client("bob")
    ledger = access.sites[CHILDRENS].ledger  # 1.0 epsilon per analyst, 3.0 in all

    answers = [alice.query(DP_SQL, epsilon=0.5, bounds=BOUNDS) for _ in range(2)]
    after_alice = _charges(ledger)
    with pytest.raises(JobRefusedError) as over:
        alice.query(DP_SQL, epsilon=0.5, bounds=BOUNDS)
    theirs = bob.query(DP_SQL, epsilon=0.5, bounds=BOUNDS)

    assert all(20_000 < a.rows[0][0] < 80_000 for a in (*answers, theirs))
    assert [(c["analyst"], c["epsilon"]) for c in after_alice] == [("alice", 0.5)] * 2
    assert "refused by site childrens: analyst alice's privacy budget is spent" in str(over.value)
    assert [(c["analyst"], c["epsilon"]) for c in _charges(ledger) if c["analyst"] != "carol"] == [
        ("alice", 0.5),
        ("alice", 0.5),
        ("bob", 0.5),
    ]
    city = _charges(access.sites["city_general"].ledger)  # 2.0 per analyst there
    assert [c["analyst"] for c in city].count("alice") == 3
    runs = [
        r
        for r in _audit(access, CHILDRENS)
        if r["decision"] == "run" and r["epsilon"] > 0 and r["analyst"] != "carol"
    ]
    assert [(r["analyst"], r["epsilon"], r["columns"]) for r in runs] == [
        ("alice", 0.5, ["income"]),
        ("alice", 0.5, ["income"]),
        ("bob", 0.5, ["income"]),
    ]
    assert not (standing.state_dir / "ledgers").exists()  # the coordinator keeps none
    assert cluster.names == ["city_general", CHILDRENS]


def test_six_queued_dp_queries_against_a_budget_for_three_are_answered_three_times(federation):
    _, _, access = federation
    carol = access.client("carol")  # 1.0 epsilon at the children's hospital: 3 x 0.3

    jobs = [carol.submit_query(DP_SQL, epsilon=0.3, bounds=BOUNDS).job_id for _ in range(6)]
    outcomes = []
    for job_id in jobs:
        try:
            carol.wait(job_id, timeout_s=180)
            outcomes.append("answered")
        except JobRefusedError as exc:
            outcomes.append("budget" if "carol's privacy budget is spent" in str(exc) else str(exc))

    charged = [
        c["epsilon"] for c in _charges(access.sites[CHILDRENS].ledger) if c["analyst"] == "carol"
    ]
    assert sorted(outcomes) == ["answered"] * 3 + ["budget"] * 3
    assert charged == [0.3] * 3
    refused = [
        r
        for r in _audit(access, CHILDRENS)
        if r["analyst"] == "carol" and r["decision"] == "refused"
    ]
    assert len(refused) == 3 and all("budget" in r["reason"] for r in refused)


def test_a_model_the_site_does_not_run_is_refused(federation):
    _, _, access = federation
    bob = access.client("bob")
    config = demo_config(SITES, rounds=2, model={"name": "logreg"})

    job_id = bob.submit(yaml.safe_dump(config.model_dump(mode="json")))
    with pytest.raises(JobRefusedError) as refused:
        bob.wait(job_id, timeout_s=120)

    assert "refused by site childrens: model 'logreg' is not allowed at this site" in str(
        refused.value
    )


def test_a_training_job_within_the_rules_runs(federation):
    _, _, access = federation
    bob = access.client("bob")

    job_id = bob.submit(yaml.safe_dump(demo_config(SITES, rounds=2).model_dump(mode="json")))
    info = bob.wait(job_id, timeout_s=180)

    assert info.state == "done"
    assert bob.result(job_id)["summary"]["rounds"] == 2

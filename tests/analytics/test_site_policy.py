"""Three real sites, each with its own site.yaml, answer the same queries under their rules.

s0 suppresses groups under 110 rows, s1 hides column ``x``, s2 releases column ``v``
only with differential privacy (its own bounds, domains and budget). The querier is
today's engine on a real coordinator; each rule is applied at its site.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from fedsys.analytics.catalog import SitesFile, SiteSpec
from fedsys.analytics.dp import PrivacySpec
from fedsys.analytics.ledger import PrivacyLedger
from fedsys.analytics.local_sites import local_cluster
from fedsys.analytics.query import FederatedQueryEngine, QueryOptions
from fedsys.silo.audit import read_audit
from fedsys.silo.coordinator import CoordinatorSettings
from fedsys.silo.mode import JobFailedError
from fedsys.silo.shaper import LinkSettings
from tests.analytics.conftest import SITES, LoopThread, write_site_tables

MIN_GROUP = 110
LABELS = [0, 1, 2, 3, 4]


def _rules(files: dict[str, Path]) -> dict[str, dict]:
    def site(name: str, **table: object) -> dict:
        return {"name": name, "sql": {"dataset": "demo", "tables": {
            "data": {"path": str(files[name]), **table}}}}

    small = site("s0")
    small["sql"]["min_group_size"] = MIN_GROUP
    return {
        "s0": small,
        "s1": site("s1", columns=["label", "v", "city", "d"]),
        "s2": {**site("s2", dp_columns=["v"], bounds={"v": [0, 100]},
                      domains={"label": LABELS}),
               "privacy": {"budget_epsilon": 2.0, "analyst_epsilon": 2.0}},
    }


class Sites:
    def __init__(self, engine: FederatedQueryEngine, loop: LoopThread, files: dict[str, Path],
                 workdir: Path) -> None:
        self.engine, self.loop, self.files, self.workdir = engine, loop, files, workdir

    def query(self, sql: str, options: QueryOptions | None = None):
        return self.loop.run(self.engine.run(sql, options))

    def site_file(self, site: str, name: str) -> Path:
        return self.workdir / "sites" / site / name


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    workdir = tmp_path_factory.mktemp("site-rules")
    files = write_site_tables(workdir / "tables")
    spec = SitesFile(dataset="demo", sites=[SiteSpec(name=s, tables={"data": str(files[s])})
                                            for s in SITES])
    cluster = local_cluster(spec, workdir, workers=1, link=LinkSettings.symmetric(0.01),
                            settings=CoordinatorSettings(site_timeout_s=20.0),
                            site_rules=_rules(files))
    loop = LoopThread()
    try:
        loop.run(cluster.start(), timeout_s=240)
        assert cluster.coordinator is not None
        ledger = PrivacyLedger(workdir / "querier_ledger.json", budget_epsilon=5.0)
        engine = FederatedQueryEngine(cluster.coordinator, "demo", ledger=ledger,
                                      job_timeout_s=60)
        yield Sites(engine, loop, files, workdir)
    finally:
        loop.run(cluster.close(), timeout_s=60)
        loop.close()


def _group_counts(path: Path) -> dict[tuple, int]:
    rows = duckdb.connect().execute(
        f"SELECT label, city, COUNT(*) FROM '{path}' GROUP BY label, city").fetchall()
    return {(label, city): n for label, city, n in rows}


def test_each_site_suppresses_its_own_small_groups(sites):
    result = sites.query("SELECT label, city, COUNT(*) AS n FROM data GROUP BY label, city "
                         "ORDER BY label, city")
    expected: dict[tuple, int] = {}
    for site in SITES:
        for key, n in _group_counts(sites.files[site]).items():
            if site != "s0" or n >= MIN_GROUP:
                expected[key] = expected.get(key, 0) + n
    suppressed = [k for k, n in _group_counts(sites.files["s0"]).items() if n < MIN_GROUP]
    assert suppressed, "the data must hold groups under the minimum at s0"
    assert result.rows == sorted((*k, n) for k, n in expected.items())


def test_a_column_one_site_hides_fails_the_query_naming_that_site(sites):
    with pytest.raises(JobFailedError, match=r"site 's1'.*refused.*column\(s\) x"):
        sites.query("SELECT AVG(x) FROM data")


def test_an_exact_answer_on_a_dp_only_column_is_refused_by_its_site(sites):
    with pytest.raises(JobFailedError, match=r"site 's2'.*v may only be released with "
                                             r"differential privacy"):
        sites.query("SELECT label, SUM(v) AS s FROM data GROUP BY label")
    refusals = [r for r in read_audit(sites.site_file("s2", "site_audit.jsonl"))
                if r["decision"] == "refused"]
    assert refusals and all("differential privacy" in r["reason"] for r in refusals)
    assert all(r["epsilon"] == 0 for r in refusals)


def test_a_dp_only_column_is_noised_at_its_site_and_charged_to_its_own_ledger(sites):
    options = QueryOptions(privacy=PrivacySpec(epsilon=1.0, bounds={"v": (0.0, 100.0)}),
                           domains={"label": LABELS})
    result = sites.query("SELECT label, SUM(v) AS s FROM data GROUP BY label ORDER BY label",
                         options)
    exact = dict(duckdb.connect().execute(
        "SELECT label, SUM(v) FROM (" + " UNION ALL ".join(
            f"SELECT * FROM '{sites.files[s]}'" for s in SITES) + ") GROUP BY label"
    ).fetchall())
    assert [r[0] for r in result.rows] == LABELS
    for label, total in result.rows:  # Laplace scale 100 twice: far below 5000
        assert abs(total - exact[label]) < 5000 and total != exact[label]
    ledger = json.loads(sites.site_file("s2", "site_ledger.json").read_text())
    charges = [c["epsilon"] for c in ledger["charges"] if "analytics.partial" in c["what"]]
    assert charges == [1.0]
    assert not sites.site_file("s0", "site_ledger.json").exists()
    runs = [r for r in read_audit(sites.site_file("s2", "site_audit.jsonl"))
            if r["decision"] == "run" and r["epsilon"] and r["task"] == "analytics.partial"]
    assert len(runs) == 1 and runs[0]["columns"] == ["label", "v"]


def test_a_dp_only_column_under_secure_sums_is_noised_at_its_site_before_masking(sites):
    with pytest.raises(JobFailedError, match=r"site 's2'.*exact answer is refused"):
        sites.query("SELECT label, SUM(v) AS s FROM data GROUP BY label",
                    QueryOptions(secure=True, domains={"label": LABELS}))
    options = QueryOptions(privacy=PrivacySpec(epsilon=0.5, bounds={"v": (0.0, 100.0)}),
                           domains={"label": LABELS}, secure=True)
    result = sites.query("SELECT label, SUM(v) AS s FROM data GROUP BY label ORDER BY label",
                         options)
    exact = dict(duckdb.connect().execute(
        "SELECT label, SUM(v) FROM (" + " UNION ALL ".join(
            f"SELECT * FROM '{sites.files[s]}'" for s in SITES) + ") GROUP BY label"
    ).fetchall())
    assert [r[0] for r in result.rows] == LABELS
    for label, total in result.rows:  # Laplace scale 200 twice: far below 10000
        assert abs(total - exact[label]) < 10000 and total != exact[label]
    ledger = json.loads(sites.site_file("s2", "site_ledger.json").read_text())
    assert [c["epsilon"] for c in ledger["charges"]
            if "analytics.masked_partial" in c["what"]] == [0.5]


def test_the_site_reads_every_column_a_query_touches_and_refuses_patterns():
    from fedsys.analytics.planner import plan_query
    from fedsys.analytics.site_policy import read_columns
    from fedsys.silo.gate import TaskRefusedError

    plan = plan_query("SELECT city, SUM(v * 2) FROM data WHERE x > 1 AND data.d IS NOT NULL "
                      "GROUP BY city HAVING COUNT(*) > 3 ORDER BY 2")
    assert read_columns(plan) == {"city", "v", "x", "d"}
    assert "s" in read_columns(plan_query("SELECT SUM(s.inner_field) FROM data"))
    with pytest.raises(TaskRefusedError, match="by pattern"):
        read_columns(plan_query("SELECT COUNT(*) FROM data WHERE COLUMNS('ss.*') > 0"))


def test_a_hidden_column_is_never_loaded_into_the_sites_database(tmp_path):
    from fedsys.analytics.catalog import site_database
    from fedsys.silo.site_rules import load_site_rules

    (tmp_path / "t.csv").write_text("a,ssn\n1,123\n")
    (tmp_path / "site.yaml").write_text("sql:\n  tables:\n    t: {path: t.csv, columns: [a]}\n")
    catalog = Path(load_site_rules(tmp_path / "site.yaml").datasets()["data"])
    con = site_database(catalog)
    assert con.execute("SELECT SUM(a) FROM t").fetchall() == [(1,)]
    with pytest.raises(duckdb.BinderException):
        con.execute("SELECT SUM(ssn) FROM t")


def test_the_site_checks_a_deeply_nested_query_it_can_plan():
    from fedsys.analytics.planner import plan_query
    from fedsys.analytics.site_policy import read_columns

    deep = "(" * 100 + "v * 2" + ")" * 100
    plan = plan_query(f"SELECT label, SUM({deep}) FROM data WHERE {'(' * 100}x > 0"
                      f"{')' * 100} GROUP BY label")
    assert read_columns(plan) == {"label", "v", "x"}

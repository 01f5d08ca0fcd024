"""Sites whose physical types differ: unified before any partial, answers equal the union.

Two real sites, one Parquet and one CSV (DuckDB's CSV type inference reads integral
numbers as BIGINT where the Parquet file holds DOUBLE or INTEGER), each query compared
with DuckDB run centrally on the union of the two files.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pytest

from fedsys.analytics.catalog import SitesFile, SiteSpec
from fedsys.analytics.dp import PrivacySpec
from fedsys.analytics.ledger import PrivacyLedger
from fedsys.analytics.local_sites import local_cluster
from fedsys.analytics.planner import UnsupportedQueryError, plan_query
from fedsys.analytics.query import FederatedQueryEngine, QueryOptions
from fedsys.analytics.schema import STALE_SCHEMA, site_casts, unify_columns
from fedsys.silo.coordinator import CoordinatorSettings

from .conftest import Federation, LoopThread, central

SITES = ("north", "south")


def write_drifting_tables(folder: Path) -> dict[str, Path]:
    """The same columns stored with different types: Parquet at north, CSV at south."""
    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    rng = np.random.default_rng(29)
    n, s = 3000, 2500
    north = {"label": rng.integers(0, 4, n), "id": rng.integers(0, 1300, n).astype(float),
             "small": rng.integers(0, 6, n).astype(float), "big": rng.integers(0, 5, n),
             "amount": np.round(rng.normal(100.0, 30.0, n), 3), "qty": rng.integers(0, 50, n),
             "code": rng.integers(0, 100, n)}
    south = {"label": rng.integers(0, 4, s), "id": rng.integers(900, 2000, s),
             "small": rng.integers(2, 8, s),
             "big": rng.choice([0, 1, 2, 3_000_000_000, 5_000_000_000], s),
             "amount": rng.integers(0, 200, s), "qty": rng.integers(0, 5000, s),
             "code": np.array([f"c{v}" for v in rng.integers(0, 100, s)])}
    files = {"north": folder / "north.parquet", "south": folder / "south.csv"}
    con.register("raw", north)
    con.execute("COPY (SELECT label, id, small, CAST(big AS INTEGER) AS big, amount, "
                f"CAST(qty AS INTEGER) AS qty, code FROM raw) TO '{files['north']}'")
    con.unregister("raw")
    con.register("raw", south)
    con.execute(f"COPY (SELECT * FROM raw) TO '{files['south']}'")
    return files


def _types(path: Path) -> dict[str, str]:
    return {r[0]: r[1] for r in duckdb.connect().execute(
        f"DESCRIBE SELECT * FROM '{path}'").fetchall()}


@pytest.fixture(scope="module")
def drift(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    workdir = tmp_path_factory.mktemp("drift")
    files = write_drifting_tables(workdir / "tables")
    spec = SitesFile(dataset="drift", sites=[SiteSpec(name=s, tables={"data": str(files[s])})
                                             for s in SITES])
    cluster = local_cluster(spec, workdir, workers=1,
                            settings=CoordinatorSettings(site_timeout_s=6.0))
    loop = LoopThread()
    try:
        loop.run(cluster.start(), timeout_s=240)
        assert cluster.coordinator is not None
        ledger = PrivacyLedger(workdir / "ledger.json", budget_epsilon=1.0)
        engine = FederatedQueryEngine(cluster.coordinator, "drift", ledger=ledger,
                                      job_timeout_s=60)
        yield Federation(engine, cluster, loop, files, workdir)
    finally:
        loop.run(cluster.close(), timeout_s=60)
        loop.close()


def test_the_sites_really_store_different_types(drift):
    north, south = _types(drift.files["north"]), _types(drift.files["south"])
    assert (north["id"], south["id"]) == ("DOUBLE", "BIGINT")
    assert (north["big"], south["big"]) == ("INTEGER", "BIGINT")
    assert (north["qty"], south["qty"]) == ("INTEGER", "BIGINT")
    assert (north["amount"], south["amount"]) == ("DOUBLE", "BIGINT")
    assert (north["code"], south["code"]) == ("BIGINT", "VARCHAR")


EXACT = [
    # INTEGER at north, BIGINT at south (with values past 2**31).
    "SELECT MAX(big) AS hi, MIN(big) AS lo, SUM(big) AS total, COUNT(big) AS n FROM data",
    "SELECT big, COUNT(*) AS n, SUM(qty) AS q, MAX(qty) AS top FROM data GROUP BY big "
    "ORDER BY big",
    "SELECT SUM(qty) AS s, AVG(qty) AS a, MAX(qty) AS m, VAR_SAMP(qty) AS v FROM data",
    # DOUBLE at north, BIGINT at south.
    "SELECT label, SUM(amount) AS s, AVG(amount) AS a, MIN(amount) AS lo, MAX(amount) AS hi, "
    "STDDEV_POP(amount) AS sd FROM data GROUP BY label ORDER BY label",
    "SELECT small, COUNT(*) AS n, SUM(amount) AS s FROM data GROUP BY small ORDER BY small",
    "SELECT HISTOGRAM(small) AS h FROM data WHERE id > 1000",
    # Small cardinalities are exact (8 distinct values, 4 labels, per-group counts).
    "SELECT APPROX_COUNT_DISTINCT(small) AS n, APPROX_COUNT_DISTINCT(label) AS l FROM data",
    "SELECT label, APPROX_COUNT_DISTINCT(small) AS n, APPROX_COUNT_DISTINCT(big) AS b "
    "FROM data GROUP BY label ORDER BY label",
]


def _assert_same(rows, expected):
    assert len(rows) == len(expected), (rows, expected)
    for row, want in zip(rows, expected, strict=True):
        assert len(row) == len(want)
        for value, truth in zip(row, want, strict=True):
            if isinstance(truth, dict):
                assert {float(k): n for k, n in value.items()} == \
                    {float(k): n for k, n in truth.items()}
            elif isinstance(truth, float) or isinstance(value, float):
                np.testing.assert_allclose(float(value), float(truth), rtol=1e-9)
            else:
                assert value == truth


@pytest.mark.parametrize("sql", EXACT)
def test_type_drift_queries_equal_duckdb_on_the_union(drift, sql):
    result = drift.query(sql, QueryOptions(parts=2))
    _assert_same(result.rows, central(drift.files, sql, SITES))


def test_distinct_count_hashes_one_value_alike_whatever_its_type(drift):
    (estimate,), = drift.query("SELECT APPROX_COUNT_DISTINCT(id) FROM data").rows
    (truth, north, south), = central(
        drift.files, "SELECT COUNT(DISTINCT id), COUNT(DISTINCT id) FILTER (WHERE id < 1300), "
        "COUNT(DISTINCT id) FILTER (WHERE id >= 900) FROM data", SITES)
    assert truth > 1024  # past the exact limit: the HLL sketches answer
    assert north + south - truth > 350  # values both sites hold, once as DOUBLE once BIGINT
    assert abs(estimate - truth) <= 3 * 1.04 / np.sqrt(2**12) * truth


def test_secure_sums_over_drifting_types_equal_the_union(drift):
    sql = "SELECT label, COUNT(*) AS n, SUM(amount) AS s FROM data GROUP BY label ORDER BY label"
    result = drift.query(sql, QueryOptions(secure=True, domains={"label": range(4)}))
    expected = central(drift.files, sql, SITES)
    _assert_same([(k, int(n), s) for k, n, s in result.rows], expected)


@pytest.mark.parametrize("sql", [
    "SELECT SUM(code) FROM data",
    "SELECT label, COUNT(*) FROM data WHERE code = 'c1' GROUP BY label",
])
def test_a_string_at_one_site_and_a_number_at_another_is_refused(drift, sql):
    with pytest.raises(UnsupportedQueryError) as info:
        drift.query(sql)
    message = str(info.value)
    assert "column code is BIGINT at site north and VARCHAR at site south" in message
    assert "a string and a number" in message and "\n" not in message


def test_a_refused_private_query_spends_no_budget(drift):
    privacy = PrivacySpec(epsilon=0.5, bounds={"code": (0.0, 100.0)})
    with pytest.raises(UnsupportedQueryError, match="column code"):
        drift.query("SELECT SUM(code) FROM data", QueryOptions(privacy=privacy))
    assert drift.engine.ledger.spent("drift").queries == 0


def test_a_stale_cached_schema_is_read_again(drift):
    sql = "SELECT MAX(id) AS m, APPROX_COUNT_DISTINCT(small) AS n FROM data"
    drift.query(sql)
    # The coordinator believes north's id is BIGINT (as if north restarted with other
    # files): north refuses to narrow its DOUBLE, the engine reads the types again.
    drift.engine.schemas_[("north", "data")]["id"] = "BIGINT"
    result = drift.query(sql)
    _assert_same(result.rows, central(drift.files, sql, SITES))
    assert drift.engine.schemas_[("north", "data")]["id"] == "DOUBLE"


# ----------------------------------------------------------------- without sites


def test_unify_widens_integers_and_reads_integers_and_floats_as_floats():
    plan_columns = ("a", "b", "c", "d", "e")
    schemas = {"s0": {"a": "INTEGER", "b": "BIGINT", "c": "DATE", "d": "INTEGER[]",
                      "e": "DECIMAL(18,3)"},
               "s1": {"a": "BIGINT", "b": "DOUBLE", "c": "TIMESTAMP", "d": "INTEGER[]",
                      "e": "INTEGER"}}
    assert unify_columns(plan_columns, schemas) == {
        "a": "BIGINT", "b": "DOUBLE", "c": "TIMESTAMP", "d": "INTEGER[]", "e": "DECIMAL(18,3)"}


@pytest.mark.parametrize(("schemas", "message"), [
    ({"s0": {"x": "VARCHAR"}, "s1": {"x": "BIGINT"}, "s2": {"x": "DOUBLE"}, "s3": {"x": "BIGINT"}},
     "column x is BIGINT at sites s1, s3 and DOUBLE at site s2 and VARCHAR at site s0: a string "
     "and a number have no common type; store it as one type at every site$"),
    ({"s0": {"x": "BOOLEAN"}, "s1": {"x": "DATE"}},
     "column x is BOOLEAN at site s0 and DATE at site s1: these types"),
    ({"s0": {"x": "INTEGER[]"}, "s1": {"x": "BIGINT[]"}}, "column x is"),
    ({"s0": {"x": "BIGINT"}, "s1": {"x": None}}, "column x is missing at site s1"),
])
def test_unify_refuses_types_without_a_common_one_naming_column_and_sites(schemas, message):
    with pytest.raises(UnsupportedQueryError, match=message.replace("[", "\\[")):
        unify_columns(("x",), schemas)


def test_a_site_casts_only_its_own_columns_to_plain_wider_types():
    con = duckdb.connect()
    con.execute("CREATE TABLE data (v INTEGER, x DOUBLE, s VARCHAR)")
    plan = plan_query("SELECT SUM(v), MAX(x), COUNT(s) FROM data")
    assert site_casts(con, plan, {"v": "BIGINT", "x": "DOUBLE"}, "s0") == {"v": "BIGINT"}
    for types, reason in [
        ({"x": "BIGINT"}, STALE_SCHEMA),  # narrowing DOUBLE would lose values
        ({"s": "DOUBLE"}, STALE_SCHEMA),  # a string is not a number
        ({"gone": "BIGINT"}, "no column gone"),
        ({"v": "BIGINT) AS v FROM data; DROP TABLE data; --"}, "not a plain DuckDB type"),
    ]:
        with pytest.raises(ValueError, match=reason):
            site_casts(con, plan, types, "s0")
    assert con.execute("SELECT COUNT(*) FROM data").fetchall() == [(0,)]

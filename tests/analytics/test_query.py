"""Federated queries on real sites equal the same query run centrally by DuckDB.

The last test kills a site: keep it last (the deployment is shared by the module).
"""

import os
import signal

import datasketches as ds
import numpy as np
import pytest

from fedsys.analytics.dp import PrivacySpec
from fedsys.analytics.ledger import BudgetExceededError
from fedsys.analytics.planner import UnsupportedQueryError
from fedsys.analytics.query import QueryOptions
from fedsys.silo.mode import EngineMode, JobFailedError

from .conftest import central

EXACT = [
    "SELECT label, COUNT(*), COUNT(x), SUM(v), AVG(x), MIN(x), MAX(d), VAR_SAMP(x), "
    "VAR_POP(x), STDDEV_SAMP(x), STDDEV_POP(x) FROM data GROUP BY label ORDER BY label",
    "SELECT city, label, SUM(v) AS s FROM data WHERE x > 0 GROUP BY city, label "
    "HAVING SUM(v) > 3000 ORDER BY s DESC, city, label LIMIT 5",
    "SELECT YEAR(d) AS y, COUNT(*) AS n, AVG(v) / 2 + 1 AS half FROM data GROUP BY y ORDER BY y",
    "SELECT COUNT(*), SUM(x), MIN(city), AVG(v) FROM data WHERE v > 1000",  # no rows
    "SELECT HISTOGRAM(city), HISTOGRAM(label) FROM data",
    "SELECT city, MIN(d), MAX(city), STDDEV(v) FROM data GROUP BY 1 ORDER BY 1",
    # 100 nested parentheses in an aggregate's argument and in WHERE.
    "SELECT label, SUM(" + "(" * 100 + "v * 2" + ")" * 100 + ") AS s FROM data WHERE "
    + "(" * 100 + "x > 0" + ")" * 100 + " GROUP BY label ORDER BY label",
]


def _assert_same(rows, expected):
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected, strict=True):
        assert len(row) == len(want)
        for value, truth in zip(row, want, strict=True):
            if isinstance(truth, float) or isinstance(value, float):
                np.testing.assert_allclose(float(value), float(truth), rtol=1e-9)
            else:
                assert value == truth


@pytest.mark.parametrize("sql", EXACT)
def test_exact_query_equals_central_duckdb(federation, sql):
    result = federation.query(sql, QueryOptions(parts=2))
    _assert_same(result.rows, central(federation.files, sql))
    assert result.bytes_moved > 0


def test_baseline_mode_gives_the_same_answer(federation):
    sql = EXACT[0]
    federation.engine.mode = EngineMode.baseline()
    try:
        result = federation.query(sql, QueryOptions(parts=3))
    finally:
        federation.engine.mode = EngineMode.sol()
    _assert_same(result.rows, central(federation.files, sql))


def test_sketches_are_within_their_error_bounds(federation):
    sql = ("SELECT label, APPROX_QUANTILE(x, 0.5) AS med, APPROX_QUANTILE(x, 0.9) AS p90, "
           "APPROX_COUNT_DISTINCT(d) AS days FROM data GROUP BY label ORDER BY label")
    result = federation.query(sql, QueryOptions(parts=2))
    truth = central(federation.files, "SELECT label, LIST(x ORDER BY x) FILTER "
                    "(WHERE x IS NOT NULL), COUNT(DISTINCT d) FROM data GROUP BY label "
                    "ORDER BY label")
    rank_error = ds.kll_doubles_sketch(200).normalized_rank_error(False)
    assert len(truth) == 5  # labels 0 to 4
    for (label, med, p90, days), (label_t, values, days_t) in zip(result.rows, truth,
                                                                   strict=True):
        assert label == label_t
        values = np.asarray(values)
        for q, estimate in ((0.5, med), (0.9, p90)):
            rank = np.searchsorted(values, estimate, side="right") / len(values)
            assert abs(rank - q) <= rank_error
        assert days == days_t  # at most 900 distinct days per label: counted exactly


def test_sketches_of_groups_without_values_are_null_and_zero(federation):
    # Rows with x NULL: every group's value list is empty, as the central answer shows.
    sql = ("SELECT label, APPROX_QUANTILE(x, 0.5) AS med, APPROX_COUNT_DISTINCT(x) AS n, "
           "COUNT(*) AS rows FROM data WHERE x IS NULL GROUP BY label ORDER BY label")
    result = federation.query(sql, QueryOptions(parts=2))
    truth = central(federation.files, sql)
    assert truth and all(row[1] is None and row[2] == 0 for row in truth)
    assert result.rows == truth


def test_unsupported_queries_get_a_clear_error(federation):
    with pytest.raises(UnsupportedQueryError, match="MEDIAN"):
        federation.query("SELECT MEDIAN(x) FROM data")
    for sql, written in [("SELECT QUANTILE_CONT(x, 0.5) FROM data", "QUANTILE_CONT"),
                         ("SELECT label, string_agg(city, ',') FROM data GROUP BY label",
                          "STRING_AGG"),
                         ("SELECT LIST(v) FROM data WHERE v < 3", "LIST")]:
        with pytest.raises(UnsupportedQueryError, match=f"^{written} has no mergeable form"):
            federation.query(sql)
    with pytest.raises(UnsupportedQueryError, match="nests parentheses 300 deep; at most 256"):
        federation.query("SELECT COUNT(*) FROM data WHERE " + "(" * 300 + "v > 1" + ")" * 300)
    with pytest.raises(UnsupportedQueryError, match="MIN has no form under differential"):
        federation.query("SELECT MIN(x) FROM data", QueryOptions(secure=True))
    with pytest.raises(JobFailedError, match="nosuch"):
        federation.query("SELECT COUNT(*) FROM nosuch")


def test_secure_sum_equals_the_exact_totals(federation):
    sql = ("SELECT label, COUNT(*) AS n, SUM(v) AS s, AVG(v) AS a, VAR_SAMP(v) AS var "
           "FROM data GROUP BY label ORDER BY label")
    result = federation.query(sql, QueryOptions(secure=True, domains={"label": range(5)}))
    expected = central(federation.files, sql)
    assert [r[:3] for r in result.rows] == [(float(a), float(b), float(c))
                                            for a, b, c, _, _ in expected]  # exact
    np.testing.assert_allclose([r[3:] for r in result.rows], [r[3:] for r in expected],
                               rtol=1e-9)
    assert result.dropped == []


def test_dp_query_is_within_its_error_and_the_budget_is_enforced(federation):
    ledger = federation.engine.ledger
    privacy = PrivacySpec(epsilon=0.4, bounds={"v": (0.0, 100.0)})
    sql = "SELECT COUNT(*) AS n, SUM(v) AS s FROM data"
    (n_true, s_true), = central(federation.files, sql)
    for _ in range(2):
        result = federation.query(sql, QueryOptions(privacy=privacy))
        (n, s), = result.rows
        counts, sums = result.measures[0][0], result.measures[1][0]
        assert counts.scale == pytest.approx(1 / 0.2)  # epsilon split over 2 measurements
        assert sums.scale == pytest.approx(100 / 0.2)
        assert abs(n - n_true) <= counts.error_bound(1e-4)
        assert abs(s - s_true) <= sums.error_bound(1e-4)
    assert ledger.spent("demo").epsilon == pytest.approx(0.8)
    with pytest.raises(BudgetExceededError, match="budget of dataset 'demo' exceeded"):
        federation.query(sql, QueryOptions(privacy=privacy))
    assert ledger.spent("demo").queries == 2  # refused before any charge or site work


def test_secure_sum_survives_a_site_dropout(federation):
    sql = "SELECT label, COUNT(*) AS n, SUM(v) AS s FROM data GROUP BY label ORDER BY label"
    options = QueryOptions(secure=True, domains={"label": range(5)})
    federation.query(sql, options)  # the key exchange happened with all three sites
    site = federation.cluster.processes[2]
    os.killpg(site.pid, signal.SIGSTOP)  # s2 hangs mid-query: silent until declared lost
    try:
        result = federation.query(sql, options)
    finally:
        os.killpg(site.pid, signal.SIGKILL)
    assert result.dropped == ["s2"]
    expected = central(federation.files, sql, sites=("s0", "s1"))
    assert result.rows == [(k, float(n), float(s)) for k, n, s in expected]  # exact

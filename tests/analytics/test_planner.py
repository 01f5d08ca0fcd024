"""The planner: what runs at the sites, what runs at the coordinator, what is refused."""

import duckdb
import numpy as np
import pytest

from fedsys.analytics.aggregates import merge_partials
from fedsys.analytics.planner import UnsupportedQueryError, plan_query
from fedsys.analytics.query import finish


def test_group_by_query_pushes_where_and_partials_down():
    plan = plan_query("SELECT label, COUNT(*), AVG(x) FROM data WHERE x > 0 GROUP BY label")
    assert plan.table == "data"
    assert plan.keys == ("label",)
    assert [a.kind for a in plan.aggregates] == ["count", "avg"]
    site = plan.site_sql(row_range=(10, 20))
    assert "SUM(x)" in site and "COUNT(x)" in site and "COUNT(*)" in site
    assert "(x > 0)" in site and "rowid >= 10 AND rowid < 20" in site
    assert site.endswith("GROUP BY _k0")


def test_having_order_limit_and_expressions_run_on_merged_values():
    plan = plan_query("SELECT label AS l, SUM(x) / COUNT(*) AS m FROM data GROUP BY 1 "
                      "HAVING COUNT(*) > 1 ORDER BY m DESC LIMIT 2")
    # Prepare: two sites' partial rows, merged per group.
    merged = [[0, 10.0, 4], [1, 3.0, 1], [2, 9.0, 3]]  # label, sum, count
    columns, rows = finish(plan, ["BIGINT", "DOUBLE", "BIGINT"], merged)
    assert columns == ["l", "m"]
    assert rows == [(2, 3.0), (0, 2.5)]  # group 1 fails HAVING


def test_equal_aggregates_share_one_slot():
    plan = plan_query("SELECT SUM(x), SUM(x) + 1, COUNT(*) FROM data HAVING SUM(x) > 0")
    assert [a.kind for a in plan.aggregates] == ["sum", "count"]


@pytest.mark.parametrize(("sql", "operator"), [
    ("SELECT MEDIAN(x) FROM data", "MEDIAN"),
    ("SELECT QUANTILE_CONT(x, 0.5) FROM data", "^QUANTILE_CONT .*use APPROX_QUANTILE"),
    ("SELECT label, STRING_AGG(city, ',') FROM data GROUP BY label", "^STRING_AGG "),
    ("SELECT list(v) FROM data", "^LIST "),
    ("SELECT Array_Agg(v) FROM data", "^ARRAY_AGG "),
    ("SELECT group_concat(city) FROM data", "^GROUP_CONCAT "),
    ("SELECT mode(x) FROM data", "^MODE .*HISTOGRAM"),
    ("SELECT KURTOSIS(x) FROM data", "KURTOSIS"),
    ("SELECT COUNT(DISTINCT x) FROM data", "COUNT\\(DISTINCT"),
    ("SELECT SUM(a.x) FROM a JOIN b ON a.k = b.k", "JOIN"),
    ("SELECT x FROM data", "column x"),
    ("SELECT *, COUNT(*) FROM data", "SELECT \\*"),
    ("SELECT SUM(x) OVER () FROM data", "window function"),
    ("SELECT COUNT(*) FROM (SELECT 1)", "subqueries"),
    ("SELECT COUNT(*) FROM read_csv('/etc/passwd')", "one table"),
    ("DELETE FROM data", "DELETE"),
])
def test_queries_without_a_mergeable_form_are_refused_naming_the_operator(sql, operator):
    with pytest.raises(UnsupportedQueryError, match=operator):
        plan_query(sql)


def test_a_syntax_error_is_one_clear_line():
    with pytest.raises(ValueError, match="does not parse") as info:
        plan_query("SELECT COUNT(* FROM data")
    assert "\n" not in str(info.value)


def test_variance_merge_equals_the_variance_of_the_union():
    # Prepare: three sites' (count, mean, M2) partials computed by DuckDB.
    rng = np.random.default_rng(0)
    parts = [rng.normal(1000.0, 3.0, n) for n in (5, 400, 77)]
    con = duckdb.connect()
    partials = []
    for values in parts:
        con.register("v", {"x": values})
        partials.append(con.execute(
            "SELECT COUNT(x), AVG(x), VAR_POP(x) * COUNT(x) FROM v").fetchall()[0])
        con.unregister("v")
    plan = plan_query("SELECT VAR_SAMP(x), STDDEV_POP(x) FROM data")
    union = np.concatenate(parts)
    np.testing.assert_allclose(merge_partials(plan.aggregates[0], partials),
                               union.var(ddof=1), rtol=1e-10)
    np.testing.assert_allclose(merge_partials(plan.aggregates[1], partials), union.std(),
                               rtol=1e-10)


def test_aggregates_with_equal_partials_read_one_set_of_site_columns():
    plan = plan_query("SELECT APPROX_QUANTILE(x, 0.5), APPROX_QUANTILE(x, 0.99), SUM(x), "
                      "AVG(x), APPROX_QUANTILE(v, 0.5) FROM data")
    assert plan.column_sources() == (0, 0, 2, 2, 4)
    site = plan.site_sql()
    assert site.count("LIST((x)::DOUBLE)") == 1 and site.count("LIST((v)::DOUBLE)") == 1
    assert "_a1_" not in site and "_a3_" not in site
    # Secure (summable) partials keep one set of columns per slot, as the masks expect.
    summable = plan_query("SELECT SUM(x), AVG(x) FROM data")
    assert summable.site_sql(secure=True).count("AS _a1_") == 2


@pytest.mark.parametrize("sql", [
    "SELECT QUANTILE_CONT(x, 0.5) FROM data",
    "SELECT SUM(v), STRING_AGG(city, ',') FROM data",
    "SELECT LIST(v) FROM data",
])
def test_refusals_never_name_sqlglots_normalised_operator(sql):
    with pytest.raises(UnsupportedQueryError) as info:
        plan_query(sql)
    for normalised in ("PERCENTILE_CONT", "GROUP_CONCAT", "ARRAY_AGG"):
        assert normalised not in str(info.value)


def test_specs_carry_the_operator_as_written():
    plan = plan_query("SELECT approx_count_distinct(x), Stddev_Samp(v) FROM data")
    assert [a.name for a in plan.aggregates] == ["APPROX_COUNT_DISTINCT", "STDDEV_SAMP"]


def test_a_chain_of_operators_under_the_depth_limit_runs_in_duckdb():
    sql = "SELECT SUM(" + "v + " * 400 + "v) FROM data"
    con = duckdb.connect()
    con.execute("CREATE TABLE data AS SELECT i AS v FROM range(10) t(i)")
    assert con.execute(plan_query(sql).site_sql()).fetchall() == [(401 * 45, 10)]


def test_a_hundred_nested_parentheses_plan_and_run_in_duckdb():
    depth = 100
    sql = ("SELECT label, SUM(" + "(" * depth + "v + 1" + ")" * depth + ") AS s FROM data "
           "WHERE " + "(" * depth + "v > 2" + ")" * depth + " GROUP BY label ORDER BY label")
    plan = plan_query(sql)
    con = duckdb.connect()
    con.execute("CREATE TABLE data AS SELECT i % 3 AS label, i AS v FROM range(10) t(i)")
    partials = sorted(con.execute(plan.site_sql()).fetchall())  # label, SUM, COUNT
    assert [(k, s) for k, s, _ in partials] == con.execute(sql).fetchall()
    assert partials[0] == (0, 4 + 7 + 10, 3)  # v = 3, 6, 9


@pytest.mark.parametrize("sql", [
    "SELECT SUM(" + "(" * 5000 + "v" + ")" * 5000 + ") FROM data",
    "SELECT COUNT(*) FROM data WHERE " + "NOT " * 5000 + "v > 1",
    "SELECT SUM(" + "v + " * 2000 + "v) FROM data",  # DuckDB's own limit is 1000
])
def test_too_deep_nesting_is_refused_in_one_line(sql):
    with pytest.raises(UnsupportedQueryError, match="nest") as info:
        plan_query(sql)
    assert "\n" not in str(info.value)
    assert "recursion" not in str(info.value)

"""Distinct counts: one hash per SQL value whatever its type, exact while small."""

import datetime as dt
import decimal

import duckdb
import numpy as np
import pytest

from fedsys.analytics.distinct import (
    EXACT_LIMIT,
    canonical_hashes,
    distinct_partial,
    merge_distinct,
)


def test_equal_sql_values_hash_alike_across_types():
    ints = canonical_hashes(np.array([0, 1, -7, 2**40], dtype=np.int64))
    np.testing.assert_array_equal(
        ints, canonical_hashes(np.array([0.0, 1.0, -7.0, 2.0**40])))
    for small in (np.int32, np.int16, np.int8):
        np.testing.assert_array_equal(ints[:3], canonical_hashes(np.array([0, 1, -7],
                                                                          dtype=small)))
    np.testing.assert_array_equal(ints[:2], canonical_hashes(np.array([0, 1], dtype=np.uint32)))
    np.testing.assert_array_equal(ints, canonical_hashes(
        [decimal.Decimal("0.000"), 1, -7.0, decimal.Decimal(2**40)]))
    assert canonical_hashes(np.array([-0.0]))[0] == ints[0]  # -0.0 = 0.0 in SQL
    nans = canonical_hashes(np.array([np.nan, -np.nan, float("nan")]))
    assert len(set(nans.tolist())) == 1


def test_different_values_hash_apart():
    values = [1, 1.5, "1", "1.5", b"1", dt.date(2024, 1, 1), 2, -1]
    hashes = canonical_hashes(values)
    assert len(set(hashes.tolist())) == len(values)


def test_dates_hash_as_the_timestamps_duckdb_equals_them_to():
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT DATE '2023-01-01' + i::INTEGER AS d FROM range(5) t(i)")
    dates = con.execute("SELECT LIST(d) FROM t").fetchall()[0][0]  # Python dates
    stamps = con.execute("SELECT LIST(d::TIMESTAMP) FROM t").fetchnumpy()  # datetime64
    from_numpy = canonical_hashes(stamps[next(iter(stamps))][0])
    np.testing.assert_array_equal(canonical_hashes(dates), from_numpy)


@pytest.mark.parametrize("n", [1, 7, 8, 100, EXACT_LIMIT])
def test_small_cardinalities_are_exact(n):
    rng = np.random.default_rng(n)
    values = np.arange(n)
    # Three sites holding overlapping shares, one as floats (a CSV/Parquet type drift).
    shares = [rng.choice(values, size=max(1, n // 2)) for _ in range(2)] + [values[::2] * 1.0]
    shares[0] = np.concatenate([shares[0], values[1::2]])  # every value somewhere
    assert merge_distinct([distinct_partial(s) for s in shares] + [None]) == n


def test_empty_partials_count_zero():
    assert merge_distinct([distinct_partial(None), distinct_partial([]), None]) == 0


def test_large_cardinalities_use_hll_within_three_standard_errors():
    rng = np.random.default_rng(5)
    shares = [rng.choice(30_000, size=12_000, replace=False) for _ in range(3)]
    shares.append(np.arange(EXACT_LIMIT // 2) * 1.0)  # a small exact share joins the HLLs
    truth = len(np.unique(np.concatenate(shares)))
    estimate = merge_distinct([distinct_partial(s) for s in shares])
    assert abs(estimate - truth) <= 3 * 1.04 / np.sqrt(2**12) * truth


def test_exact_shares_whose_union_outgrows_the_limit_switch_to_hll():
    shares = [np.arange(i * 600, i * 600 + 900) for i in range(4)]  # 900 each, 2700 in all
    estimate = merge_distinct([distinct_partial(s) for s in shares])
    assert abs(estimate - 2700) <= 3 * 1.04 / np.sqrt(2**12) * 2700


def test_a_malformed_exact_partial_is_refused():
    with pytest.raises(ValueError, match="malformed"):
        merge_distinct([distinct_partial([1, 2]) + b"\x01"])

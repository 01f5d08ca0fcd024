"""A TPC-H-like data generator (lineitem and orders), split over sites by order key.

DuckDB's ``tpch`` extension would have to be downloaded, so fedsys generates the two
tables its single-table TPC-H queries read, following the value rules of the TPC-H
specification (section 4.2.3: quantities 1-50, discounts 0-0.10, prices from the part
key, ship/commit/receipt dates from the order date, return flag and line status from
the 1995-06-17 current date). Deterministic in ``seed``; written as Parquet.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["QUERIES", "generate_site", "generate_sites"]

_START = np.datetime64("1992-01-01")
_END_ORDER = np.datetime64("1998-08-02")
_CURRENT = np.datetime64("1995-06-17")
_MODES = np.array(["REG AIR", "AIR", "RAIL", "SHIP", "TRUCK", "MAIL", "FOB"])
_INSTRUCT = np.array(["DELIVER IN PERSON", "COLLECT COD", "NONE", "TAKE BACK RETURN"])
_PRIORITIES = np.array(["1-URGENT", "2-HIGH", "3-MEDIUM", "4-NOT SPECIFIED", "5-LOW"])

QUERIES: dict[str, str] = {
    "q1_pricing": (
        "SELECT l_returnflag, l_linestatus, SUM(l_quantity) AS sum_qty, "
        "SUM(l_extendedprice) AS sum_base_price, "
        "SUM(l_extendedprice * (1 - l_discount)) AS sum_disc_price, "
        "SUM(l_extendedprice * (1 - l_discount) * (1 + l_tax)) AS sum_charge, "
        "AVG(l_quantity) AS avg_qty, AVG(l_extendedprice) AS avg_price, "
        "AVG(l_discount) AS avg_disc, COUNT(*) AS count_order FROM lineitem "
        "WHERE l_shipdate <= DATE '1998-09-02' GROUP BY l_returnflag, l_linestatus "
        "ORDER BY l_returnflag, l_linestatus"),
    "q6_revenue": (
        "SELECT SUM(l_extendedprice * l_discount) AS revenue FROM lineitem "
        "WHERE l_shipdate >= DATE '1994-01-01' AND l_shipdate < DATE '1995-01-01' "
        "AND l_discount BETWEEN 0.05 AND 0.07 AND l_quantity < 24"),
    "q12_late_modes": (
        "SELECT l_shipmode, COUNT(*) AS late, AVG(l_receiptdate - l_commitdate) AS days "
        "FROM lineitem WHERE l_commitdate < l_receiptdate AND l_shipdate < l_commitdate "
        "AND l_receiptdate >= DATE '1994-01-01' AND l_receiptdate < DATE '1995-01-01' "
        "GROUP BY l_shipmode HAVING COUNT(*) > 100 ORDER BY l_shipmode"),
    "q4_priorities": (
        "SELECT o_orderpriority, COUNT(*) AS order_count FROM orders "
        "WHERE o_orderdate >= DATE '1993-07-01' AND o_orderdate < DATE '1993-10-01' "
        "GROUP BY o_orderpriority ORDER BY o_orderpriority"),
    "price_stats": (
        "SELECT l_shipmode, MIN(l_extendedprice) AS lo, MAX(l_extendedprice) AS hi, "
        "STDDEV_SAMP(l_extendedprice) AS sd, APPROX_QUANTILE(l_extendedprice, 0.5) AS p50, "
        "APPROX_QUANTILE(l_extendedprice, 0.99) AS p99 FROM lineitem GROUP BY l_shipmode "
        "ORDER BY l_shipmode"),
    "distinct_parts": (
        "SELECT l_returnflag, APPROX_COUNT_DISTINCT(l_partkey) AS parts FROM lineitem "
        "GROUP BY l_returnflag ORDER BY l_returnflag"),
    "quantity_hist": (
        "SELECT HISTOGRAM(l_quantity) AS quantities FROM lineitem WHERE l_discount > 0.05"),
    "orders_by_year": (
        "SELECT YEAR(o_orderdate) AS year, o_orderstatus, COUNT(*) AS n, "
        "SUM(o_totalprice) AS revenue, AVG(o_totalprice) AS avg_price FROM orders "
        "GROUP BY year, o_orderstatus ORDER BY year, o_orderstatus"),
}
"""Single-table queries from TPC-H (Q1, Q4's filter, Q6, Q12's filter) plus statistics."""


def generate_site(folder: Path, site: int, sites: int, orders: int, seed: int = 0
                  ) -> dict[str, Path]:
    """Write site ``site``'s share (order keys ``site`` mod ``sites``) of ``orders`` orders.

    Returns the Parquet path of each table.
    """
    import duckdb

    rng = np.random.default_rng([seed, site, 20])
    orderkey = np.arange(site, orders, sites, dtype=np.int64) + 1
    n_orders = len(orderkey)
    span = int((_END_ORDER - _START).astype(int)) - 151
    orderdate = _START + rng.integers(0, span, n_orders).astype("timedelta64[D]")
    lines = rng.integers(1, 8, n_orders)
    l_order = np.repeat(orderkey, lines)
    l_date = np.repeat(orderdate, lines)
    n = len(l_order)
    linenumber = np.concatenate([np.arange(1, k + 1) for k in lines]) if n else np.zeros(0)
    partkey = rng.integers(1, 200_001, n)
    quantity = rng.integers(1, 51, n).astype(np.float64)
    retail = (90_000 + (partkey // 10) % 20_001 + 100 * (partkey % 1000)) / 100
    price = np.round(quantity * retail, 2)
    discount = rng.integers(0, 11, n) / 100
    tax = rng.integers(0, 9, n) / 100
    shipdate = l_date + rng.integers(1, 122, n).astype("timedelta64[D]")
    commitdate = l_date + rng.integers(30, 91, n).astype("timedelta64[D]")
    receiptdate = shipdate + rng.integers(1, 31, n).astype("timedelta64[D]")
    returned = np.where(rng.random(n) < 0.5, "R", "A")
    returnflag = np.where(receiptdate <= _CURRENT, returned, "N")
    linestatus = np.where(shipdate > _CURRENT, "O", "F")
    charge = price * (1 - discount) * (1 + tax)
    totalprice = np.bincount(np.repeat(np.arange(n_orders), lines), weights=charge,
                             minlength=n_orders)
    status_f = np.bincount(np.repeat(np.arange(n_orders), lines), weights=linestatus == "F",
                           minlength=n_orders)
    orderstatus = np.where(status_f == lines, "F", np.where(status_f == 0, "O", "P"))
    tables = {
        "lineitem": {
            "l_orderkey": l_order, "l_partkey": partkey,
            "l_suppkey": rng.integers(1, 10_001, n), "l_linenumber": linenumber,
            "l_quantity": quantity, "l_extendedprice": price, "l_discount": discount,
            "l_tax": tax, "l_returnflag": returnflag, "l_linestatus": linestatus,
            "l_shipdate": shipdate, "l_commitdate": commitdate, "l_receiptdate": receiptdate,
            "l_shipinstruct": _INSTRUCT[rng.integers(0, 4, n)],
            "l_shipmode": _MODES[rng.integers(0, 7, n)]},
        "orders": {
            "o_orderkey": orderkey, "o_custkey": rng.integers(1, 150_001, n_orders),
            "o_orderstatus": orderstatus, "o_totalprice": np.round(totalprice, 2),
            "o_orderdate": orderdate,
            "o_orderpriority": _PRIORITIES[rng.integers(0, 5, n_orders)]},
    }
    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    paths = {}
    for name, columns in tables.items():
        dates = [c for c, v in columns.items() if v.dtype.kind == "M"]
        con.register("raw", {c: v.astype("datetime64[us]") if c in dates else v
                             for c, v in columns.items()})
        path = folder / f"{name}.parquet"
        replace = ", ".join(f"CAST({c} AS DATE) AS {c}" for c in dates)
        con.execute(f"COPY (SELECT * REPLACE ({replace}) FROM raw) TO '{path}' "
                    f"(FORMAT parquet)")
        con.unregister("raw")
        paths[name] = path
    return paths


def generate_sites(folder: Path, sites: int, orders: int, seed: int = 0
                   ) -> list[dict[str, Path]]:
    """Every site's tables under ``folder/site-<i>/``."""
    return [generate_site(folder / f"site-{i}", i, sites, orders, seed) for i in range(sites)]

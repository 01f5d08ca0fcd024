"""Sample hospital sites for ``fedsys query --demo``: generated, skewed, and queryable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np

from fedsys.analytics.catalog import load_sites
from fedsys.analytics.sample_data import (
    DEMO_SQL,
    DIAGNOSES,
    HOSPITALS,
    hospital_visits,
    write_sample_sites,
)


def test_same_seed_same_tables_and_another_seed_differs(tmp_path: Path) -> None:
    first = write_sample_sites(tmp_path / "a", seed=3)
    again = write_sample_sites(tmp_path / "b", seed=3)
    other = write_sample_sites(tmp_path / "c", seed=4)

    for hospital in HOSPITALS:
        name = f"{hospital.name}.{hospital.table_format}"
        if hospital.table_format == "csv":
            assert (first.parent / name).read_bytes() == (again.parent / name).read_bytes()
            assert (first.parent / name).read_bytes() != (other.parent / name).read_bytes()
    assert first.read_text() == again.read_text()


def test_sites_differ_the_way_real_hospitals_do() -> None:
    city, children, rural = (hospital_visits(h, np.random.default_rng([0, i]))
                             for i, h in enumerate(HOSPITALS))

    assert children["age"].max() <= 17 < city["age"].max()
    assert np.median(rural["age"]) > np.median(city["age"]) > np.median(children["age"])
    share = {d: np.mean(children["diagnosis"] == d) for d in DIAGNOSES}
    assert max(share, key=share.get) == "respiratory"
    assert np.mean(rural["diagnosis"] == "cardiac") > np.mean(city["diagnosis"] == "cardiac")
    stay = city["length_of_stay"]
    assert stay.min() >= 1 and np.mean(stay) > np.median(stay)  # right-skewed
    assert set(city["sex"]) == {"F", "M"} and (city["cost"] > 0).all()


def test_sites_yaml_loads_with_every_table(tmp_path: Path) -> None:
    spec = load_sites(write_sample_sites(tmp_path))

    assert [s.name for s in spec.sites] == [h.name for h in HOSPITALS]
    con = duckdb.connect()
    rows = [con.execute(f"SELECT COUNT(*) FROM '{s.tables['visits']}'").fetchall()[0][0]
            for s in spec.sites]
    assert rows == [h.visits for h in HOSPITALS]
    assert spec.privacy.domains["diagnosis"] == list(DIAGNOSES)


def test_query_demo_answers_as_one_site_holding_all_rows_would(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "40", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "fedsys.cli", "query", "--demo", "--json",
         "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )

    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)  # nothing but the JSON answer on stdout
    assert done.stderr == ""  # the sites' logs are in the work folder
    assert (tmp_path / "query.log").is_file()
    demo = tmp_path / "demo"
    files = sorted(demo.glob("*.csv")) + sorted(demo.glob("*.parquet"))
    union = " UNION ALL BY NAME ".join(f"SELECT * FROM '{f}'" for f in files)
    con = duckdb.connect()
    con.execute(f"CREATE TABLE visits AS {union}")
    expected = con.execute(DEMO_SQL).fetchall()
    assert out["columns"] == ["diagnosis", "stays", "mean_stay_days", "mean_cost"]
    assert [row[:2] for row in out["rows"]] == [list(row[:2]) for row in expected]
    np.testing.assert_allclose([row[2:] for row in out["rows"]],
                               [row[2:] for row in expected], rtol=1e-9)


def test_query_demo_prints_the_sample_and_a_table(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "120", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "fedsys.cli", "query", "--demo",
         "SELECT sex, COUNT(*) AS n FROM visits GROUP BY sex ORDER BY sex"],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "sample data" in done.stdout and "city_general" in done.stdout
    assert "query:" not in done.stdout  # the user gave the query
    assert "2 rows from 3 sites" in " ".join(done.stdout.split())

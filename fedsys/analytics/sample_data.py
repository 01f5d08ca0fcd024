"""Sample site tables for trying federated SQL: hospital visits, generated, never downloaded.

Three hospitals each hold a ``visits`` table (one row per hospital stay) whose columns
are skewed the way real ones are, and differently at each site: a city hospital sees
adults of every age, a children's hospital children with respiratory illness and
injuries, a rural hospital older patients with heart disease and diabetes. Lengths of
stay are right-skewed counts of days, costs log-normal and growing with the stay.
Tables are drawn with NumPy from a fixed seed (the same seed gives the same bytes) and
written as CSV or Parquet by DuckDB, with a ``sites.yaml`` that ``fedsys query`` reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

__all__ = [
    "DEMO_SQL",
    "DIAGNOSES",
    "HOSPITALS",
    "Hospital",
    "hospital_visits",
    "write_sample_sites",
]

DIAGNOSES = ("cardiac", "diabetes", "fracture", "infection", "respiratory")
"""Diagnosis groups, in the order of a site's ``diagnosis_weights``."""

_STAY_DAYS = np.array([4.5, 3.0, 3.5, 2.5, 3.0])
"""Mean extra days in hospital of each diagnosis (beyond the first)."""
_PROCEDURE_COST = np.array([9000.0, 1500.0, 6000.0, 1200.0, 2000.0])
"""Typical cost of each diagnosis's procedures, beside the daily rate."""


@dataclass(frozen=True)
class Hospital:
    """How one site's patients look.

    Parameters
    ----------
    name
        The site's name in ``sites.yaml``.
    visits
        Rows of its ``visits`` table.
    age_mean, age_sd, age_max
        Patients' ages: normal, clipped to ``[0, age_max]``.
    female_share
        Share of patients recorded as ``F``.
    diagnosis_weights
        Relative frequency of each of :data:`DIAGNOSES`.
    daily_rate
        Cost of one day in this hospital.
    table_format
        ``csv`` or ``parquet``.
    """

    name: str
    visits: int
    age_mean: float
    age_sd: float
    age_max: int
    female_share: float
    diagnosis_weights: tuple[float, float, float, float, float]
    daily_rate: float
    table_format: str


HOSPITALS = (
    Hospital("city_general", 3000, 52.0, 19.0, 100, 0.52, (3, 2, 2, 2, 2), 1400.0, "csv"),
    Hospital("childrens", 1200, 7.0, 5.0, 17, 0.47, (0.2, 0.5, 3, 2, 5), 1800.0, "parquet"),
    Hospital("riverside_rural", 700, 67.0, 13.0, 100, 0.55, (5, 4, 1.5, 1.5, 2), 900.0, "csv"),
)
"""The demo's three sites: unequal sizes, ages, case mixes and prices."""

DEMO_SQL = (
    "SELECT diagnosis, COUNT(*) AS stays, AVG(length_of_stay) AS mean_stay_days, "
    "AVG(cost) AS mean_cost FROM visits GROUP BY diagnosis ORDER BY diagnosis"
)
"""The query ``fedsys query --demo`` runs when given none."""


def hospital_visits(hospital: Hospital, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One site's ``visits`` columns: age, sex, diagnosis, length_of_stay, cost."""
    n = hospital.visits
    age = np.clip(np.rint(rng.normal(hospital.age_mean, hospital.age_sd, n)), 0,
                  hospital.age_max).astype(np.int64)
    sex = np.where(rng.random(n) < hospital.female_share, "F", "M")
    weights = np.asarray(hospital.diagnosis_weights, dtype=float)
    code = rng.choice(len(DIAGNOSES), size=n, p=weights / weights.sum())
    diagnosis = np.asarray(DIAGNOSES)[code]
    older = 1.0 + np.maximum(age - 60, 0) / 40.0  # the old stay longer
    length_of_stay = 1 + rng.poisson(_STAY_DAYS[code] * older * rng.gamma(2.0, 0.5, n))
    cost = (hospital.daily_rate * length_of_stay + _PROCEDURE_COST[code]) * rng.lognormal(
        0.0, 0.35, n
    )
    return {
        "age": age,
        "sex": sex,
        "diagnosis": diagnosis,
        "length_of_stay": length_of_stay.astype(np.int64),
        "cost": np.round(cost, 2),
    }


def write_sample_sites(
    folder: Path, seed: int = 0, hospitals: tuple[Hospital, ...] = HOSPITALS
) -> Path:
    """Write each hospital's ``visits`` table and a ``sites.yaml`` into ``folder``.

    The ``sites.yaml`` declares the privacy bounds and key values the sample needs
    for ``--epsilon`` and ``--secure`` queries. Returns its path.

    Raises
    ------
    ImportError
        If DuckDB (the analytics extra) is not installed.
    """
    import duckdb

    folder.mkdir(parents=True, exist_ok=True)
    sites = []
    con = duckdb.connect()
    try:
        for index, hospital in enumerate(hospitals):
            columns = hospital_visits(hospital, np.random.default_rng([seed, index]))
            path = folder / f"{hospital.name}.{hospital.table_format}"
            fmt = "CSV, HEADER" if hospital.table_format == "csv" else "PARQUET"
            con.register("visits", columns)
            quoted = str(path).replace("'", "''")
            con.execute(f"COPY (SELECT * FROM visits) TO '{quoted}' (FORMAT {fmt})")
            con.unregister("visits")
            sites.append({"name": hospital.name, "tables": {"visits": path.name}})
    finally:
        con.close()
    spec = {
        "dataset": "hospital_visits",
        "sites": sites,
        "privacy": {
            "budget_epsilon": 5.0,
            "bounds": {"age": [0, 100], "length_of_stay": [1, 60], "cost": [0, 200000]},
            "domains": {"sex": ["F", "M"], "diagnosis": list(DIAGNOSES)},
        },
    }
    sites_file = folder / "sites.yaml"
    header = "# sample hospital sites written by fedsys query --demo (generated data)\n"
    sites_file.write_text(header + yaml.safe_dump(spec, sort_keys=False))
    return sites_file

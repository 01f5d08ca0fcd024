"""Simulated against measured rounds: errors, attribution of differences, calibration.

Pure functions over round records (both sides write the same :class:`RoundRecord`),
the devices' expected times and the emulated clients' own task timings; no I/O.

A round's time is measured from its start to the next round's start (the last round:
to its end), so the server's work between rounds counts on both sides.

Attribution. For round ``r`` with simulated time ``S`` and measured time ``R``:

* ``availability``: the real round's slowest counted client is not the simulated
  one (another participant set): its expected time minus the simulated slowest's;
* ``compute``: the real slowest client's compute minus its profile's (real training
  slower than the device it emulates);
* ``transfer``: the rest of that client's measured time beyond its profile
  (shaped transfers, messages, instruction delivery);
* ``server``: the real round's time beyond its slowest client (dispatch, receive
  queueing, aggregation, evaluation, checkpoint), minus what the simulator charged
  beyond its slowest client (the calibrated ``clock`` terms).

The four terms add up to ``R - S`` exactly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fedsys.metrics.records import RoundRecord

TERMS = ("compute", "transfer", "server", "availability")


@dataclass(frozen=True)
class RoundComparison:
    """One round, simulated and measured."""

    round_idx: int
    sim_s: float
    real_s: float
    sim_participants: int
    real_participants: int
    sim_dropouts: int
    real_dropouts: int
    sim_stragglers: int
    real_stragglers: int
    sim_accuracy: float | None
    real_accuracy: float | None
    same_participants: bool
    terms: dict[str, float] = field(default_factory=dict)

    @property
    def rel_error(self) -> float:
        """``(measured - simulated) / simulated`` round time."""
        return relative_error(self.real_s, self.sim_s)


@dataclass(frozen=True)
class FidelityReport:
    """Round-by-round and total agreement of a simulation with a real deployment."""

    rounds: tuple[RoundComparison, ...]
    totals: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """JSON-able form (round rows carry their relative error)."""
        rows = [{**asdict(r), "rel_error": r.rel_error} for r in self.rounds]
        return {"totals": self.totals, "rounds": rows}


def relative_error(measured: float | None, simulated: float | None) -> float:
    """``(measured - simulated) / simulated``; NaN when either is missing or ``simulated`` is 0."""
    if measured is None or simulated is None or simulated == 0:
        return math.nan
    return (measured - simulated) / simulated


def round_periods(records: Sequence[RoundRecord]) -> list[float]:
    """Each round's time: to the next round's start, the last one to its end."""
    periods = [b.start_s - a.start_s for a, b in itertools.pairwise(records)]
    if records:
        periods.append(records[-1].end_s - records[-1].start_s)
    return periods


def completed_clients(record: RoundRecord) -> dict[int, float | None]:
    """Counted clients of a round and their duration when recorded.

    The simulator lists the ids of its arrivals; a real server lists every assigned
    client with its outcome and measured duration.
    """
    clients: dict[int, float | None] = {}
    for entry in record.extra.get("clients", []):
        if isinstance(entry, dict):
            if entry.get("outcome") == "completed":
                clients[int(entry["client_id"])] = entry.get("duration_s")
        else:
            clients[int(entry)] = None
    return clients


def time_to_accuracy(records: Sequence[RoundRecord], target: float | None) -> float | None:
    """Seconds from the first round's start until accuracy first reached ``target``."""
    if target is None or not records:
        return None
    for record in records:
        if record.accuracy is not None and record.accuracy >= target:
            return record.end_s - records[0].start_s
    return None


def compare(
    sim: Sequence[RoundRecord],
    real: Sequence[RoundRecord],
    expected_s: np.ndarray,
    timings: Sequence[dict[str, Any]] = (),
    target_accuracy: float | None = None,
) -> FidelityReport:
    """Compare a simulated run with a measured one, round by round.

    Parameters
    ----------
    sim, real
        Round records of the simulation and of the deployment.
    expected_s
        Each client's round time from its profile (download + compute + upload), as
        the simulator charged it.
    timings
        Emulated clients' task timings (``timings.jsonl`` rows).
    target_accuracy
        For time-to-accuracy.
    """
    count = min(len(sim), len(real))
    sim, real = list(sim[:count]), list(real[:count])
    by_task = {(int(t["client_id"]), int(t["round_idx"])): t for t in timings}
    rows = []
    for s, r, s_period, r_period in zip(
        sim, real, round_periods(sim), round_periods(real), strict=True
    ):
        sim_ids, real_clients = completed_clients(s), completed_clients(r)
        rows.append(
            RoundComparison(
                round_idx=r.round_idx,
                sim_s=s_period,
                real_s=r_period,
                sim_participants=s.participants,
                real_participants=r.participants,
                sim_dropouts=s.dropouts,
                real_dropouts=r.dropouts,
                sim_stragglers=s.stragglers,
                real_stragglers=r.stragglers,
                sim_accuracy=s.accuracy,
                real_accuracy=r.accuracy,
                same_participants=set(sim_ids) == set(real_clients),
                terms=attribute(
                    s_period,
                    r_period,
                    list(sim_ids),
                    real_clients,
                    expected_s,
                    by_task,
                    r.round_idx,
                ),
            )
        )
    return FidelityReport(tuple(rows), _totals(rows, sim, real, target_accuracy))


def attribute(
    sim_period: float,
    real_period: float,
    sim_ids: list[int],
    real_clients: dict[int, float | None],
    expected_s: np.ndarray,
    by_task: dict[tuple[int, int], dict[str, Any]],
    round_idx: int,
) -> dict[str, float]:
    """Split ``real_period - sim_period`` into the four terms (see the module's notes)."""
    sim_slowest = max((float(expected_s[c]) for c in sim_ids), default=0.0)
    measured = {c: d for c, d in real_clients.items() if d is not None}
    if not measured:
        return {**dict.fromkeys(TERMS, 0.0), "server": real_period - sim_period}
    slowest = max(measured, key=lambda c: measured[c] or 0.0)
    real_slowest = float(measured[slowest] or 0.0)
    expected = float(expected_s[slowest])
    task = by_task.get((slowest, round_idx))
    compute = float(task["compute_s"] - task["target_compute_s"]) if task else 0.0
    return {
        "compute": compute,
        "transfer": real_slowest - expected - compute,
        "server": (real_period - real_slowest) - (sim_period - sim_slowest),
        "availability": expected - sim_slowest,
    }


def _totals(
    rows: list[RoundComparison],
    sim: list[RoundRecord],
    real: list[RoundRecord],
    target: float | None,
) -> dict[str, Any]:
    sim_total = sim[-1].end_s - sim[0].start_s if sim else 0.0
    real_total = real[-1].end_s - real[0].start_s if real else 0.0
    errors = [abs(r.rel_error) for r in rows if not math.isnan(r.rel_error)]
    sim_tta, real_tta = time_to_accuracy(sim, target), time_to_accuracy(real, target)
    sim_acc = [r.accuracy for r in sim if r.accuracy is not None]
    real_acc = [r.accuracy for r in real if r.accuracy is not None]
    return {
        "rounds": len(rows),
        "sim_total_s": sim_total,
        "real_total_s": real_total,
        "ratio": real_total / sim_total if sim_total else math.nan,
        "median_abs_round_error": float(np.median(errors)) if errors else math.nan,
        "target_accuracy": target,
        "sim_time_to_target_s": sim_tta,
        "real_time_to_target_s": real_tta,
        "time_to_target_error": relative_error(real_tta, sim_tta),
        "sim_final_accuracy": sim_acc[-1] if sim_acc else None,
        "real_final_accuracy": real_acc[-1] if real_acc else None,
        "sim_participants": sum(r.sim_participants for r in rows),
        "real_participants": sum(r.real_participants for r in rows),
        "sim_dropouts": sum(r.sim_dropouts for r in rows),
        "real_dropouts": sum(r.real_dropouts for r in rows),
        "sim_stragglers": sum(r.sim_stragglers for r in rows),
        "real_stragglers": sum(r.real_stragglers for r in rows),
        "rounds_same_participants": sum(r.same_participants for r in rows),
        "terms_s": {t: sum(r.terms.get(t, 0.0) for r in rows) for t in TERMS},
    }


def calibrate_task(real: Sequence[RoundRecord], expected_s: np.ndarray) -> float:
    """``client_task_s`` measured on a real run: a task's time beyond its device profile.

    The median, over every counted client of every round, of its measured task time
    (assignment to accepted update) minus its profile's download + compute + upload
    (``expected_s``): the protocol's messages, which no device trace holds. Never < 0.
    """
    beyond = [
        duration - float(expected_s[client])
        for record in real
        for client, duration in completed_clients(record).items()
        if duration is not None and 0 <= client < len(expected_s)
    ]
    return max(0.0, float(np.median(beyond))) if beyond else 0.0


def calibrate(real: Sequence[RoundRecord]) -> tuple[float, float]:
    """``(server_round_s, server_update_s)`` measured on a real run.

    A round's server time is its time beyond its slowest counted client (dispatch,
    receive queueing, aggregation, evaluation, checkpoint, selecting the next round).
    With participant counts that vary, a least-squares line splits it into a fixed
    and a per-update part (both kept >= 0); otherwise it is all fixed, the median.
    """
    xs, ys = [], []
    for record, period in zip(real, round_periods(real), strict=True):
        measured = [d for d in completed_clients(record).values() if d is not None]
        if measured:
            xs.append(float(record.participants))
            ys.append(period - max(measured))
    if not ys:
        return 0.0, 0.0
    x, y = np.asarray(xs), np.asarray(ys)
    if np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        if slope > 0 and intercept >= 0:
            return float(intercept), float(slope)
    return max(0.0, float(np.median(y))), 0.0

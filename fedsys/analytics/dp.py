"""Differential privacy of federated query results with OpenDP mechanisms.

A query declares a privacy spec (epsilon, optional delta, Laplace or Gaussian, clamping
bounds per column). Sites clamp every summed value to its bounds in SQL, so one person
(one row) changes a COUNT by at most 1 and a SUM by at most max(|lo|, |hi|); the
coordinator adds noise calibrated by OpenDP to the merged totals. The epsilon of a query
is split evenly over its noisy measurements; groups of a GROUP BY are disjoint, so they
share it (parallel composition). OpenDP draws its noise from a cryptographic RNG.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fedsys.aggregation.noise import Mechanism, NoisyMeasure, laplace_tail, make_noise
from fedsys.analytics.aggregates import AggSpec

__all__ = ["NoisyMeasure", "PrivacySpec", "calibrate", "laplace_tail", "make_noise"]



@dataclass(frozen=True)
class PrivacySpec:
    """How private one query's result is.

    Parameters
    ----------
    epsilon
        Privacy loss of the whole query (> 0).
    delta
        Its delta (Gaussian only; 0 for Laplace).
    mechanism
        ``laplace`` (pure epsilon-DP) or ``gaussian`` ((epsilon, delta)-DP via zCDP).
    bounds
        ``column -> (lo, hi)``: declared range of every summed column; values are clamped.
    """

    epsilon: float
    delta: float = 0.0
    mechanism: Mechanism = "laplace"
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.epsilon > 0 or not math.isfinite(self.epsilon):
            raise ValueError(f"privacy epsilon must be a positive number, got {self.epsilon}")
        if self.mechanism not in ("laplace", "gaussian"):
            raise ValueError(f"unknown DP mechanism {self.mechanism!r} (laplace, gaussian)")
        if self.mechanism == "gaussian" and not 0 < self.delta < 1:
            raise ValueError("the gaussian mechanism needs 0 < delta < 1")
        if self.mechanism == "laplace" and self.delta != 0:
            raise ValueError("the laplace mechanism takes no delta (pure epsilon-DP)")
        for column, (lo, hi) in self.bounds.items():
            if not lo <= hi:
                raise ValueError(f"bounds of column {column!r}: lo {lo} > hi {hi}")

    def bound_of(self, column: str) -> tuple[float, float]:
        """The declared bounds of ``column``.

        Raises
        ------
        ValueError
            If none were declared (a sum without bounds has unbounded sensitivity).
        """
        try:
            return self.bounds[column]
        except KeyError:
            raise ValueError(
                f"differential privacy needs declared bounds for column {column!r} "
                f"(e.g. --bounds {column}=0:100)") from None





def calibrate(aggregates: Sequence[AggSpec], privacy: PrivacySpec | None
          ) -> tuple[dict[int, tuple[float, float]], dict[int, list[NoisyMeasure]]]:
    """Clamping bounds per aggregate slot and one OpenDP mechanism per noisy partial.

    COUNT: one measurement of sensitivity 1; SUM: one of max(|lo|, |hi|); AVG: both.
    The query's epsilon and delta are split evenly over the measurements.

    Raises
    ------
    UnsupportedQueryError
        If an aggregate has no DP form here (only COUNT, SUM, AVG).
    """
    if privacy is None:
        return {}, {}
    clamps: dict[int, tuple[float, float]] = {}
    sensitivities: dict[int, list[float]] = {}
    for slot, spec in enumerate(aggregates):
        if spec.kind != "count" and spec.kind not in ("sum", "avg"):
            raise _unsupported(f"{spec.name} is not supported under differential "
                                        f"privacy (COUNT, SUM, AVG)")
        if spec.kind == "count":
            sensitivities[slot] = [1.0]
            continue
        if spec.column is None:
            raise _unsupported(f"{spec.name}({spec.arg}): differential privacy "
                                        f"needs a bare column with declared bounds")
        lo, hi = privacy.bound_of(spec.column)
        clamps[slot] = (lo, hi)
        bound = max(abs(lo), abs(hi))
        sensitivities[slot] = [bound] if spec.kind == "sum" else [bound, 1.0]
    count = sum(len(v) for v in sensitivities.values())
    eps, delta = privacy.epsilon / count, privacy.delta / count
    measures = {slot: [make_noise(s, eps, delta, privacy.mechanism) for s in sens]
                for slot, sens in sensitivities.items()}
    return clamps, measures


def _unsupported(message: str) -> ValueError:
    from fedsys.analytics.planner import UnsupportedQueryError

    return UnsupportedQueryError(message)

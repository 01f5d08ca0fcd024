"""Statistics of a simulated device population: label histograms and feature summaries.

Devices report what they hold, never their samples: each client's label histogram, and
per-feature count, sum and sum of squares (values clamped to declared bounds). Reports
can be differentially private with the same options as federated queries: OpenDP
calibrates the mechanism (Laplace or Gaussian scale from epsilon, delta and the
sensitivity: one sample moves one histogram bin by 1). In the simulator the noise is
drawn from the run's seeded stream, as the simulator's other DP noise is, so a run is
reproducible from its config and seed (a simulation protects no real data); real
queries (:mod:`fedsys.analytics.query`) draw with OpenDP's cryptographic RNG.

The reported histograms feed Oort testing's category requests
(``eval.category_counts: reported``) instead of the ground truth.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from fedsys.aggregation.noise import Mechanism, make_noise

__all__ = ["FeatureSummary", "LabelStats", "feature_summary", "label_histograms"]


@dataclass(frozen=True)
class LabelStats:
    """Reported label histograms.

    Attributes
    ----------
    per_client
        ``(clients, classes)`` counts as the devices reported them (non-negative ints).
    population
        Their sum: the population's label histogram.
    noise_scale
        Scale of each bin's noise (``None``: exact).
    """

    per_client: np.ndarray
    population: np.ndarray
    noise_scale: float | None = None


@dataclass(frozen=True)
class FeatureSummary:
    """Population summary of each feature (min/max only when exact)."""

    count: float
    mean: np.ndarray
    variance: np.ndarray
    minimum: np.ndarray | None
    maximum: np.ndarray | None
    noise_scales: tuple[float, float, float] | None = None


def label_histograms(
    counts: np.ndarray,
    epsilon: float | None = None,
    delta: float = 0.0,
    mechanism: Mechanism = "laplace",
    seed: int = 0,
) -> LabelStats:
    """What every device reports of its ``counts`` row, under local DP when ``epsilon``.

    Each device's histogram is ``epsilon``-DP on its own (bins are disjoint, so one
    sample changes one bin by 1); noisy bins are rounded and floored at 0, which is
    post-processing and costs no privacy.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if epsilon is None:
        return LabelStats(counts.copy(), counts.sum(axis=0))
    noise = make_noise(1.0, epsilon, delta, mechanism)
    rng = np.random.default_rng([seed, 0x57A7])
    if mechanism == "laplace":
        draws = rng.laplace(0.0, noise.scale, counts.shape)
    else:
        draws = rng.normal(0.0, noise.scale, counts.shape)
    reported = np.maximum(np.round(counts + draws), 0).astype(np.int64)
    return LabelStats(reported, reported.sum(axis=0), noise.scale)


def feature_summary(
    clients: Iterable[np.ndarray],
    bounds: tuple[float, float] | None = None,
    epsilon: float | None = None,
    delta: float = 0.0,
    mechanism: Mechanism = "laplace",
    seed: int = 0,
) -> FeatureSummary:
    """Per-feature count, mean and variance over every client's ``(samples, features)``.

    Clients send (count, sum, sum of squares) of values clamped to ``bounds``; the sums
    are added (as a secure sum would) and, with ``epsilon``, noised centrally: epsilon is
    split over the three sums, whose sensitivities are 1, ``d * B`` and ``d * B**2``
    (``B`` = max |bound|, ``d`` features).

    Raises
    ------
    ValueError
        If DP is asked without bounds, or no client holds data.
    """
    if epsilon is not None and bounds is None:
        raise ValueError("feature summaries under differential privacy need bounds")
    count, total, squares = 0.0, None, None
    lo_seen, hi_seen = None, None
    for data in clients:
        x = np.asarray(data, dtype=np.float64).reshape(len(data), -1)
        if bounds is not None:
            x = np.clip(x, bounds[0], bounds[1])
        count += len(x)
        total = x.sum(axis=0) if total is None else total + x.sum(axis=0)
        squares = (x * x).sum(axis=0) if squares is None else squares + (x * x).sum(axis=0)
        if len(x):
            lo_seen = x.min(axis=0) if lo_seen is None else np.minimum(lo_seen, x.min(axis=0))
            hi_seen = x.max(axis=0) if hi_seen is None else np.maximum(hi_seen, x.max(axis=0))
    if total is None or squares is None or count == 0:
        raise ValueError("no client holds any data to summarise")
    scales = None
    if epsilon is not None and bounds is not None:
        d, b = len(total), max(abs(bounds[0]), abs(bounds[1]))
        rng = np.random.default_rng([seed, 0xFEA7])
        measures = [make_noise(s, epsilon / 3, delta / 3, mechanism)
                    for s in (1.0, d * b, d * b * b)]
        draw = rng.laplace if mechanism == "laplace" else rng.normal
        count = max(1.0, count + float(draw(0.0, measures[0].scale)))
        total = total + draw(0.0, measures[1].scale, total.shape)
        squares = squares + draw(0.0, measures[2].scale, squares.shape)
        scales = (measures[0].scale, measures[1].scale, measures[2].scale)
        lo_seen = hi_seen = None  # exact extremes are not differentially private
    mean = total / count
    variance = np.maximum(squares / count - mean * mean, 0.0) * count / max(count - 1, 1)
    return FeatureSummary(count, mean, variance, lo_seen, hi_seen, scales)

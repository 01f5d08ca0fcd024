"""Calibrated noise from OpenDP: one mechanism for a value of known sensitivity.

Federated queries (:mod:`fedsys.analytics.dp`) and device statistics
(:mod:`fedsys.data.device_stats`) both noise released values with these, so the scale
for an (epsilon, delta) comes from OpenDP's own privacy map in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["Mechanism", "NoisyMeasure", "laplace_tail", "make_noise"]

Mechanism = Literal["laplace", "gaussian"]


@dataclass(frozen=True)
class NoisyMeasure:
    """One calibrated OpenDP mechanism: call it on a true value, read its noise scale.

    Attributes
    ----------
    scale
        Laplace ``b`` or Gaussian ``sigma`` chosen by OpenDP.
    mechanism
        Which distribution.
    """

    measurement: object
    scale: float
    mechanism: Mechanism

    def __call__(self, value: float) -> float:
        return float(self.measurement(float(value)))  # type: ignore[operator]

    def error_bound(self, beta: float) -> float:
        """|noise| stays below this with probability ``1 - beta`` (the stated error)."""
        if self.mechanism == "laplace":
            return laplace_tail(self.scale, beta)
        from scipy.stats import norm

        return float(self.scale * norm.isf(beta / 2))



def laplace_tail(scale: float, beta: float) -> float:
    """``t`` with P(|Laplace(scale)| > t) = beta."""
    return scale * math.log(1 / beta)



def make_noise(sensitivity: float, epsilon: float, delta: float, mechanism: Mechanism
               ) -> NoisyMeasure:
    """An OpenDP mechanism on floats with ``sensitivity`` that is (epsilon, delta)-DP.

    The scale is found by OpenDP's own privacy map (binary search), not by hand.
    """
    import opendp.prelude as dp

    dp.enable_features("contrib")
    domain = dp.atom_domain(T=float, nan=False)
    metric = dp.absolute_distance(T=float)
    sensitivity = max(float(sensitivity), 1e-12)
    if mechanism == "laplace":
        def build(scale: float) -> object:
            return dp.m.make_laplace(domain, metric, scale)
        scale = dp.binary_search_param(build, d_in=sensitivity, d_out=epsilon)
    else:
        def build(scale: float) -> object:
            zcdp = dp.m.make_gaussian(domain, metric, scale)
            return dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(zcdp), delta)
        scale = dp.binary_search_param(build, d_in=sensitivity, d_out=(epsilon, delta))
    return NoisyMeasure(build(scale), float(scale), mechanism)

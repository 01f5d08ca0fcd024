"""Sim-to-real fidelity: the same job simulated and deployed, compared round by round.

* :func:`run_fidelity`: simulate a config, run it as a real loopback deployment of
  emulated devices, compare (optionally calibrating the simulator's ``clock`` terms).
* :func:`compare`, :func:`calibrate`, :func:`calibrate_task`: the comparison and
  calibration, pure functions
  over round records.
"""

from fedsys.fidelity.compare import (
    FidelityReport,
    RoundComparison,
    attribute,
    calibrate,
    calibrate_task,
    compare,
    relative_error,
    round_periods,
)
from fedsys.fidelity.runner import FidelityRun, run_fidelity

__all__ = [
    "FidelityReport",
    "FidelityRun",
    "RoundComparison",
    "attribute",
    "calibrate",
    "calibrate_task",
    "compare",
    "relative_error",
    "round_periods",
    "run_fidelity",
]

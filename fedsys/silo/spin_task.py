"""A test load task: ``silo.spin`` busies a worker's CPU and returns a checkable value.

Every site imports this module (see :data:`~fedsys.silo.task_registry.BUILTIN_TASK_MODULES`);
tests and benchmarks use it to give tasks a known duration and output size.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedsys.silo.task_registry import Output, TaskContext, task

__all__ = ["spin"]


@task("silo.spin")
def spin(ctx: TaskContext, params: Mapping[str, Any], inputs: Sequence[Output]) -> Output:
    """Busy the CPU for ``ms`` milliseconds and return ``out_bytes`` bytes (test load).

    Sites named in ``slow_sites`` take ``slowdown`` (default 10) times longer.

    The payload is ``value`` (default: the sum of the inputs' ``value`` plus one) as a
    repeated little-endian int64, so consumers can check exactly what they received.
    """
    ms = float(params.get("ms", 10))
    if ctx.site in params.get("slow_sites", ()):  # emulate a site with slower machines
        ms *= float(params.get("slowdown", 10))
    deadline = time.perf_counter() + ms / 1000
    spins = 0
    while time.perf_counter() < deadline:
        spins += 1
    value = int(params.get("value", sum(int(i.meta.get("value", 0)) for i in inputs) + 1))
    size = max(8, int(params.get("out_bytes", 8)))
    payload = np.full(size // 8, value, dtype="<i8").tobytes()
    return Output(payload, {"value": value, "site": ctx.site})

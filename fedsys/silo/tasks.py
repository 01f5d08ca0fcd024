"""Built-in site tasks: a histogram analytics pair, FedAvg local training, and a test load.

Every site imports this module (see :data:`~fedsys.silo.registry.BUILTIN_TASK_MODULES`).
Payloads are raw little-endian arrays; nothing is pickled.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedsys.silo.registry import Output, TaskContext, task


def histogram_counts(values: np.ndarray, bins: int, lo: float, hi: float) -> np.ndarray:
    """Counts of ``values`` in ``bins`` equal bins over ``[lo, hi]`` (int64)."""
    counts, _ = np.histogram(values, bins=bins, range=(lo, hi))
    return counts.astype(np.int64)


def sum_count_outputs(inputs: Sequence[Output]) -> Output:
    """Add up histogram outputs: counts element-wise, ``rows`` and ``sum`` in the metadata.

    Integer counts and the per-output sums are added in the order given, so the result
    does not depend on when each input arrived.
    """
    if not inputs:
        raise ValueError("nothing to merge")
    total = np.zeros_like(np.frombuffer(inputs[0].payload, dtype="<i8"))
    rows, value_sum = 0, 0.0
    for item in inputs:
        total = total + np.frombuffer(item.payload, dtype="<i8")
        rows += int(item.meta.get("rows", 0))
        value_sum += float(item.meta.get("sum", 0.0))
    return Output(total.astype("<i8").tobytes(), {"rows": rows, "sum": value_sum})


@task("silo.histogram")
def histogram(ctx: TaskContext, params: Mapping[str, Any], inputs: Sequence[Output]) -> Output:
    """Histogram, row count and sum of one partition of a column of the site's data.

    Params: ``column`` (array name), ``part`` and ``parts`` (which slice), ``bins``,
    ``lo``, ``hi``, ``passes`` (repeat the scan to make a task heavier; default 1).
    """
    values = ctx.arrays()[str(params.get("column", "values"))]
    part, parts = int(params["part"]), int(params["parts"])
    if not 0 <= part < parts:
        raise ValueError(f"part {part} is outside 0..{parts - 1}")
    chunk = np.array_split(values, parts)[part]
    bins, lo, hi = int(params.get("bins", 32)), float(params["lo"]), float(params["hi"])
    counts = histogram_counts(chunk, bins, lo, hi)
    for _ in range(int(params.get("passes", 1)) - 1):
        counts = histogram_counts(chunk, bins, lo, hi)
    return Output(counts.astype("<i8").tobytes(), {"rows": len(chunk), "sum": float(chunk.sum())})


@task("silo.sum_counts")
def sum_counts(ctx: TaskContext, params: Mapping[str, Any], inputs: Sequence[Output]) -> Output:
    """Merge histogram outputs at a site (the same rule as the coordinator's merge)."""
    return sum_count_outputs(inputs)


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


@task("silo.train")
def train(ctx: TaskContext, params: Mapping[str, Any], inputs: Sequence[Output]) -> Output:
    """Local training for cross-silo FL: the delta from the global weights in ``inputs[0]``.

    Params: ``model`` (``{"kind": "mlp", "input_shape": [...], "num_classes": n,
    "hidden": [...]}``), ``train`` (:class:`~fedsys.core.training.TrainConfig` fields),
    ``seed`` and ``round``. The site's dataset holds ``x`` (float32) and ``y`` (int64).
    """
    import torch

    from fedsys.core.training import LocalTrainer, TrainConfig
    from fedsys.silo.fl import build_model, weights_from_output

    model = build_model(params["model"])
    start = weights_from_output(inputs[0], model)
    arrays = ctx.arrays()
    features = torch.from_numpy(np.asarray(arrays["x"], dtype=np.float32))
    labels = torch.from_numpy(np.asarray(arrays["y"], dtype=np.int64))
    trainer = LocalTrainer(TrainConfig(**params.get("train", {})))
    seed = [int(params.get("seed", 0)), int(params.get("round", 0))]
    result = trainer.train(model, start, features, labels, seed=seed)
    from fedsys.wire.tensors import weights_to_bytes

    meta = {"num_samples": result.num_samples, "mean_loss": result.loss.mean_loss}
    return Output(weights_to_bytes(result.delta), meta)

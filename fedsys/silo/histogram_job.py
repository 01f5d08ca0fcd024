"""The histogram task library: per-partition histograms at the sites, one merge.

Registers ``silo.histogram`` (counts, rows and sum of one partition of a column) and
``silo.sum_counts`` (the merge, run at a site), and builds the two-stage job
(:func:`histogram_job`) whose coordinator merge is :func:`sum_count_outputs`. Every site
imports this module (see :data:`~fedsys.silo.task_registry.BUILTIN_TASK_MODULES`).
Payloads are raw little-endian int64 counts; nothing is pickled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedsys.silo.job import Job, JobBuilder
from fedsys.silo.task_registry import Output, TaskContext, task

__all__ = ["histogram", "histogram_counts", "histogram_job", "sum_count_outputs", "sum_counts"]


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


def histogram_job(
    datasets: Sequence[str],
    parts_per_dataset: int,
    lo: float,
    hi: float,
    bins: int = 32,
    passes: int = 1,
    merge_site: str | None = None,
    name: str = "histogram",
) -> Job:
    """A two-stage analytics job: per-partition histograms at the sites, then one merge.

    Parameters
    ----------
    datasets
        One dataset per site (tasks run where their dataset is).
    parts_per_dataset
        Short tasks per dataset.
    lo, hi, bins
        Histogram range and bin count.
    passes
        Scans per task (task weight).
    merge_site
        Merge at this site (a bound-early ``silo.sum_counts`` task) instead of at the
        coordinator.
    name
        Job name.
    """
    job = JobBuilder(name)
    parts = []
    for dataset in datasets:
        for part in range(parts_per_dataset):
            params = {"part": part, "parts": parts_per_dataset, "bins": bins,
                      "lo": lo, "hi": hi, "passes": passes}
            parts.append(job.site_task(f"part/{dataset}/{part}", "silo.histogram", params,
                                       dataset=dataset))
    if merge_site is None:
        job.merge("total", sum_count_outputs, parts)
    else:
        job.site_task("total", "silo.sum_counts", {}, parts, site=merge_site)
    return job.build(results=["total"])

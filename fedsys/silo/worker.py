"""Compute workers of a site: a pool of processes that run registered tasks.

Processes (not threads) so that Python tasks run in parallel. The pool uses the
``forkserver`` start method: the site manager already runs gRPC threads, which a plain
``fork`` must not copy, and the fork server imports the task modules once so that a new
worker does not pay for importing PyTorch again.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fedsys.silo.task_registry import (
    BUILTIN_TASK_MODULES,
    REGISTRY,
    Output,
    TaskContext,
    load_task_modules,
)

_SITE = ""
_DATASETS: dict[str, Path] = {}
_POOL_SIZE = 1


@dataclass(frozen=True)
class WorkResult:
    """A finished task as a worker reports it (plain values: they cross a process pipe)."""

    payload: bytes
    meta_json: str
    error: str
    start_s: float
    end_s: float
    worker_pid: int

    @property
    def compute_s(self) -> float:
        """Seconds the task ran."""
        return self.end_s - self.start_s


def init_worker(
    site: str, datasets: Mapping[str, str], modules: Sequence[str], pool_size: int = 1
) -> None:
    """Pool initializer: remember the site's datasets and import its task modules.

    Tasks run on one PyTorch thread unless a task asks for more (``silo.train`` sets
    the job's ``threads`` for its model, sharing the cores among ``pool_size`` workers).
    """
    global _SITE, _DATASETS, _POOL_SIZE
    _SITE = site
    _DATASETS = {name: Path(path) for name, path in datasets.items()}
    _POOL_SIZE = pool_size
    load_task_modules(modules)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def pool_size() -> int:
    """Compute workers of this worker's pool (they share the machine's cores)."""
    return _POOL_SIZE


def run_task(
    name: str,
    task_id: str,
    dataset: str,
    params: Mapping[str, object],
    inputs: Sequence[tuple[bytes, str]],
) -> WorkResult:
    """Run the task registered as ``name`` in this worker; errors come back as text."""
    start = time.time()
    try:
        fn = REGISTRY.get(name)
        if dataset and dataset not in _DATASETS:
            raise KeyError(f"dataset {dataset!r} is not on site {_SITE!r}")
        ctx = TaskContext(
            site=_SITE,
            task_id=task_id,
            dataset=dataset or None,
            data_path=_DATASETS.get(dataset) if dataset else None,
        )
        outs = [Output.from_wire(payload, meta) for payload, meta in inputs]
        result = fn(ctx, params, outs)
        if not isinstance(result, Output):
            raise TypeError(f"task {name!r} returned {type(result).__name__}, not Output")
        return WorkResult(
            result.payload, result.meta_json(), "", start, time.time(), os.getpid()
        )
    except Exception as exc:  # a task's failure is reported, never fatal to the worker
        error = f"{type(exc).__name__}: {exc}"
        return WorkResult(b"", "", error, start, time.time(), os.getpid())


def make_pool(
    workers: int, site: str, datasets: Mapping[str, str], modules: Sequence[str]
) -> ProcessPoolExecutor:
    """A process pool of ``workers`` compute workers for ``site``.

    Raises
    ------
    ValueError
        If ``workers`` < 1.
    """
    if workers < 1:
        raise ValueError(f"a site needs at least one compute worker, got {workers}")
    context = multiprocessing.get_context("forkserver")
    # torch imports its compiler stack (torch._dynamo, seconds of CPU) lazily at the first
    # optimizer use; importing it once in the fork server spares every worker that cost.
    context.set_forkserver_preload(
        ["fedsys.silo.worker", *BUILTIN_TASK_MODULES, "torch._dynamo", *modules]
    )
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=init_worker,
        initargs=(site, dict(datasets), tuple(modules), workers),
    )

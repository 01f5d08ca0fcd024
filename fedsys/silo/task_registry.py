"""Task code registered by name on the sites: what a job may ask a site to run.

No code crosses the wire. A job names a task (``"silo.histogram"``); each site imports
the modules that register its tasks (``--tasks my_pkg.sql_tasks``) and runs the
function registered under that name on its own data. An analytics module registers
its SQL tasks the same way::

    from fedsys.silo.task_registry import task

    @task("analytics.count")
    def count(ctx, params, inputs):
        table = ctx.arrays()["rows"]
        return Output(str(len(table)).encode())

Each task belongs to a job kind (``analytics``, ``training``...), which a site's rules
accept or not, and may have a *checker*: the function a site with rules
(:mod:`fedsys.silo.gate`) calls before the task runs, to refuse it or to say what it
reads and costs (``@checker("analytics.partial")``).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BUILTIN_TASK_MODULES = (
    "fedsys.silo.histogram_job",
    "fedsys.silo.training_job",
    "fedsys.silo.config_training",
    "fedsys.silo.spin_task",
)
"""Modules every site imports: the built-in histogram, training and test-load tasks."""

BUILTIN_KINDS = {"silo.histogram": "histogram", "silo.sum_counts": "histogram",
                 "silo.train": "training", "silo.train_config": "training",
                 "silo.spin": "test"}
"""Job kinds of the built-in tasks (others say theirs when registered, or take the
prefix of their name: ``analytics.partial`` is an ``analytics`` task)."""


@dataclass(frozen=True)
class Output:
    """A task's output: raw bytes plus small JSON metadata (counts, sample sizes).

    Parameters
    ----------
    payload
        The bytes sent to whoever consumes the output (never pickled objects).
    meta
        JSON-serialisable metadata, e.g. ``{"num_samples": 512}``.
    """

    payload: bytes = b""
    meta: Mapping[str, Any] = field(default_factory=dict)

    def meta_json(self) -> str:
        """The metadata as compact JSON."""
        return json.dumps(dict(self.meta), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_wire(cls, payload: bytes, meta_json: str) -> Output:
        """Rebuild an output from its wire fields.

        Raises
        ------
        ValueError
            If the metadata is not a JSON object.
        """
        meta = json.loads(meta_json) if meta_json else {}
        if not isinstance(meta, dict):
            raise ValueError("task output metadata must be a JSON object")
        return cls(payload=payload, meta=meta)


@dataclass(frozen=True)
class TaskContext:
    """What a task knows about where it runs.

    Parameters
    ----------
    site
        The site's name.
    task_id
        The id of this task in its job.
    dataset
        Name of the local dataset the task reads, if any.
    data_path
        Path of that dataset on the site (an ``.npz`` file, or a folder for other tasks).
    """

    site: str
    task_id: str
    dataset: str | None = None
    data_path: Path | None = None

    def arrays(self) -> Mapping[str, np.ndarray]:
        """The dataset's arrays (``.npz``, pickling off), loaded once per worker process.

        Raises
        ------
        ValueError
            If the task has no dataset or it is not an ``.npz`` file.
        """
        if self.data_path is None:
            raise ValueError(f"task {self.task_id} needs a dataset but none was given")
        return _load_npz(self.data_path)


_NPZ_CACHE: dict[Path, dict[str, np.ndarray]] = {}


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    cached = _NPZ_CACHE.get(path)
    if cached is None:
        if path.suffix == ".json":
            cached = _client_share(path)
        elif path.suffix != ".npz":
            raise ValueError(f"dataset {path} is not an .npz file")
        else:
            with np.load(path, allow_pickle=False) as archive:
                cached = {key: archive[key] for key in archive.files}
        _NPZ_CACHE[path] = cached
    return cached


def _client_share(path: Path) -> dict[str, np.ndarray]:
    """``x``/``y`` of one client's share of a run config's dataset (a site's ``site.yaml``
    names the dataset section, the client and the seed; see
    :class:`~fedsys.silo.site_rules.TrainingDataset`)."""
    from fedsys.config.workload import DatasetConfig
    from fedsys.parts.builders import build_dataset

    spec = json.loads(path.read_text())
    data = build_dataset(DatasetConfig.model_validate(spec["dataset"]), int(spec["seed"]))
    client = int(spec["client"])
    if not 0 <= client < len(data.offsets) - 1:
        raise ValueError(f"dataset {path}: client {client} is not one of the "
                         f"{len(data.offsets) - 1} shares")
    features, labels = data.client_data(client)
    return {"x": features.numpy().astype(np.float32), "y": labels.numpy().astype(np.int64)}


TaskFn = Callable[[TaskContext, Mapping[str, Any], Sequence[Output]], Output]
"""A task: (context, JSON params, outputs of its inputs in order) -> output."""

CheckFn = Callable[[Any, Any], Any]
"""A checker: (the site's rules, the task request) -> the admission, see
:mod:`fedsys.silo.gate` (typed there: the registry stays below the rules)."""


class TaskRegistry:
    """Task functions by name."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskFn] = {}
        self._kinds: dict[str, str] = dict(BUILTIN_KINDS)
        self._checkers: dict[str, CheckFn] = {}

    def register(self, name: str, fn: TaskFn) -> None:
        """Register ``fn`` under ``name``.

        Raises
        ------
        ValueError
            If another function already holds the name.
        """
        existing = self._tasks.get(name)
        if existing is not None and existing is not fn:
            raise ValueError(f"task name {name!r} is already registered")
        self._tasks[name] = fn

    def get(self, name: str) -> TaskFn:
        """The function registered as ``name``.

        Raises
        ------
        KeyError
            If no task has that name on this site.
        """
        try:
            return self._tasks[name]
        except KeyError:
            raise KeyError(f"no task named {name!r} is registered on this site") from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._tasks)

    def set_kind(self, name: str, kind: str) -> None:
        """Say which job kind task ``name`` belongs to."""
        self._kinds[name] = kind

    def kind(self, name: str) -> str:
        """The job kind of task ``name`` (its name's prefix unless registered)."""
        return self._kinds.get(name, name.partition(".")[0])

    def register_checker(self, name: str, fn: CheckFn) -> None:
        """Register the site-rules checker of task ``name``."""
        self._checkers[name] = fn

    def checker(self, name: str) -> CheckFn | None:
        """The checker of task ``name``, ``None`` if it has none."""
        return self._checkers.get(name)


REGISTRY = TaskRegistry()
"""The process-wide registry sites use; task modules register into it when imported."""


def task(name: str, kind: str | None = None) -> Callable[[TaskFn], TaskFn]:
    """Decorator registering a task function in :data:`REGISTRY` under ``name``.

    ``kind``: the job kind a site's rules accept it under (default: the name's prefix).
    """

    def decorate(fn: TaskFn) -> TaskFn:
        REGISTRY.register(name, fn)
        if kind is not None:
            REGISTRY.set_kind(name, kind)
        return fn

    return decorate


def checker(name: str) -> Callable[[CheckFn], CheckFn]:
    """Decorator registering the site-rules checker of task ``name``."""

    def decorate(fn: CheckFn) -> CheckFn:
        REGISTRY.register_checker(name, fn)
        return fn

    return decorate


def load_task_modules(modules: Sequence[str]) -> list[str]:
    """Import the built-in task module and ``modules``; return the names registered.

    Raises
    ------
    ImportError
        If a module cannot be imported (named in the message).
    """
    for module in (*BUILTIN_TASK_MODULES, *modules):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ImportError(f"cannot import task module {module!r}: {exc}") from None
    return REGISTRY.names()

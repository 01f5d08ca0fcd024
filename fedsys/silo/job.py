"""Jobs: small DAGs of per-site tasks and merges, defined in Python.

A job lists *site tasks* (a registered task name, JSON params, the outputs it consumes,
and where it may run: sites holding a dataset, or one pinned site) and *coordinator
merges* (a Python function run in the coordinator over outputs). Iterated jobs (FL
rounds) are unrolled: round ``r``'s tasks consume round ``r-1``'s merge. Every task has
a stable id, and the engine accepts exactly one output per id, so a merge never counts
an output twice however often a task was run.

This module holds the types only; task libraries (:mod:`~fedsys.silo.histogram_job`,
:mod:`~fedsys.silo.training_job`) import them to build their jobs. Example: a two-stage
analytics job::

    job = JobBuilder("hist")
    parts = [job.site_task(f"part/{s}/{i}", "silo.histogram", params, dataset=s)
             for s in sites for i in range(8)]
    job.merge("total", sum_count_outputs, parts)
    job.build(results=["total"])
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from fedsys.silo.task_registry import Output

MergeFn = Callable[[Sequence[Output]], Output]
"""A coordinator merge: outputs of its inputs, in the order declared -> one output."""


class BlockMerge(Protocol):
    """A merge computed block by block: output bytes ``[a, b)`` come from bytes ``[a, b)``
    of every input (an element-wise rule such as FedAvg; every input and the output have
    the same size).

    Blocks lie on a fixed grid of ``block_bytes``, whether the engine merges them as the
    inputs stream in (Sol) or all at the end, so both give the same bytes.
    """

    block_bytes: int

    def merge_block(self, inputs: Sequence[memoryview], metas: Sequence[Mapping[str, Any]]
                    ) -> bytes:
        """One output block from the same block of every input (metadata in full)."""
        ...

    def finish_meta(self, metas: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The output's metadata, once every input is complete."""
        ...


def merge_blocks(blocks: BlockMerge, payloads: Sequence[bytes | bytearray | memoryview],
                 metas: Sequence[Mapping[str, Any]], out: bytearray, start: int,
                 stop: int) -> None:
    """Fill ``out[start:stop]`` block by block (``start`` on the grid).

    Raises
    ------
    ValueError
        If the inputs differ in size from ``out``.
    """
    size = len(out)
    if any(len(p) != size for p in payloads):
        raise ValueError(f"a block merge needs inputs of {size} bytes each, got "
                         f"{[len(p) for p in payloads]}")
    views = [memoryview(p) for p in payloads]
    for lo in range(start, stop, blocks.block_bytes):
        hi = min(lo + blocks.block_bytes, size)
        out[lo:hi] = blocks.merge_block([v[lo:hi] for v in views], metas)


def whole_block_merge(blocks: BlockMerge) -> MergeFn:
    """A plain merge function doing every block of a :class:`BlockMerge` at once."""

    def merge(inputs: Sequence[Output]) -> Output:
        out = bytearray(len(inputs[0].payload))
        metas = [item.meta for item in inputs]
        merge_blocks(blocks, [item.payload for item in inputs], metas, out, 0, len(out))
        return Output(bytes(out), blocks.finish_meta(metas))

    return merge


@dataclass(frozen=True)
class SiteTask:
    """A task that runs on a site.

    Parameters
    ----------
    task_id
        Unique within the job.
    task
        Registered task name (``"silo.histogram"``).
    params
        JSON-serialisable parameters.
    inputs
        Ids of the outputs it consumes, in order (other tasks, merges or constants).
    dataset
        Only sites holding this dataset may run it (``None``: any site).
    site
        Pin the task to one site (e.g. a merge at a chosen site).
    optional
        The job may go on without it: when no connected site can run it (its site was
        lost), its output is an empty :class:`Output` with ``{"skipped": reason}``
        metadata instead of a failed job (e.g. a site's share of a secure sum that
        tolerates dropouts).
    """

    task_id: str
    task: str
    params: Mapping[str, Any] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    dataset: str | None = None
    site: str | None = None
    optional: bool = False

    def params_json(self) -> str:
        """Parameters as compact JSON."""
        return json.dumps(dict(self.params), sort_keys=True, separators=(",", ":"))

    def can_run_on(self, site: str, datasets: Sequence[str]) -> bool:
        """Whether ``site`` (holding ``datasets``) may run this task."""
        if self.site is not None and self.site != site:
            return False
        return self.dataset is None or self.dataset in datasets


@dataclass(frozen=True)
class Merge:
    """A merge that runs in the coordinator when all its inputs are there.

    ``blocks`` (optional) is the same merge as a :class:`BlockMerge`: an early-binding
    engine may then merge blocks while the inputs still stream in and push the output's
    blocks to the sites of its consumers as they are made.
    """

    task_id: str
    fn: MergeFn
    inputs: tuple[str, ...]
    blocks: BlockMerge | None = None


@dataclass(frozen=True)
class Job:
    """A validated DAG of site tasks, merges and constant inputs.

    Parameters
    ----------
    name
        Job name (for logs and records).
    tasks
        Site tasks in a topological order.
    merges
        Coordinator merges.
    constants
        Outputs known before the job starts (e.g. the initial model).
    results
        Ids whose outputs the job returns; it is complete when they all exist.
    """

    name: str
    tasks: tuple[SiteTask, ...]
    merges: tuple[Merge, ...] = ()
    constants: Mapping[str, Output] = field(default_factory=dict)
    results: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        seen: set[str] = set(self.constants)
        nodes: list[tuple[str, tuple[str, ...]]] = [(t.task_id, t.inputs) for t in self.tasks]
        nodes += [(m.task_id, m.inputs) for m in self.merges]
        ids = [node_id for node_id, _ in nodes]
        if len(set(ids) | seen) != len(ids) + len(seen):
            raise ValueError(f"job {self.name!r} has duplicate task ids")
        known = set(ids) | seen
        for node_id, inputs in nodes:
            missing = [key for key in inputs if key not in known]
            if missing:
                raise ValueError(f"task {node_id!r} consumes unknown outputs {missing}")
        for key in self.results:
            if key not in known:
                raise ValueError(f"job result {key!r} is not a task of job {self.name!r}")
        if not self.results:
            raise ValueError(f"job {self.name!r} declares no results")


class JobBuilder:
    """Collects tasks and merges, then builds a :class:`Job`.

    Parameters
    ----------
    name
        The job's name.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: list[SiteTask] = []
        self._merges: list[Merge] = []
        self._constants: dict[str, Output] = {}

    def constant(self, task_id: str, output: Output) -> str:
        """A known input (e.g. initial weights); returns its id."""
        self._constants[task_id] = output
        return task_id

    def site_task(
        self,
        task_id: str,
        task: str,
        params: Mapping[str, Any] | None = None,
        inputs: Sequence[str] = (),
        dataset: str | None = None,
        site: str | None = None,
        optional: bool = False,
    ) -> str:
        """Add a site task; returns its id."""
        self._tasks.append(
            SiteTask(task_id, task, dict(params or {}), tuple(inputs), dataset, site, optional)
        )
        return task_id

    def merge(self, task_id: str, fn: MergeFn, inputs: Sequence[str]) -> str:
        """Add a coordinator merge; returns its id."""
        self._merges.append(Merge(task_id, fn, tuple(inputs)))
        return task_id

    def block_merge(self, task_id: str, blocks: BlockMerge, inputs: Sequence[str]) -> str:
        """Add a coordinator merge that can run block by block; returns its id."""
        self._merges.append(Merge(task_id, whole_block_merge(blocks), tuple(inputs), blocks))
        return task_id

    def build(self, results: Sequence[str]) -> Job:
        """The validated job.

        Raises
        ------
        ValueError
            On duplicate ids, unknown inputs or results.
        """
        return Job(
            self.name, tuple(self._tasks), tuple(self._merges), dict(self._constants),
            tuple(results),
        )

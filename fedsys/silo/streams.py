"""Merges that run while their inputs still stream in (Sol's decoupled communication).

A :class:`~fedsys.silo.job.Merge` with ``blocks`` is element-wise: output block ``k``
needs only block ``k`` of every input. While the sites upload their outputs, the
coordinator reports each upload's progress to the engine; a :class:`Stream` merges every
block all inputs hold and the engine pushes it at once to the sites whose tasks (bound
early) consume the merge, so the next round's input flows down while this round's
outputs still flow up. The pushed blocks carry no checksum; when the merge completes,
the site gets the whole output's SHA-256 (:class:`~fedsys.silo.actions.Seal`) and checks
the parts before any task uses them.

Blocks are read from upload buffers before their checksum is verified, so a stream is
kept only if each input's accepted output is the very buffer it read; otherwise the
engine abandons it and merges the accepted outputs from scratch.

:class:`Stream` is one merge in progress; :class:`MergeStreams` is a job run's side of
streaming: which merges stream, to which sites, and what is pushed as blocks are made.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fedsys.silo.actions import Action, PushPart, Seal
from fedsys.silo.binding import Binder
from fedsys.silo.dataflow import Dataflow
from fedsys.silo.job import Merge, merge_blocks
from fedsys.silo.task_registry import Output

__all__ = ["MergeStreams", "Source", "Stream"]

_LOGGER = logging.getLogger(__name__)


@dataclass
class Source:
    """An input of a stream whose upload is in progress."""

    buffer: bytearray
    received: int
    meta: Mapping[str, Any]


@dataclass
class Stream:
    """A block merge in progress: the output so far and the sites it is pushed to.

    Parameters
    ----------
    merge
        The merge (its ``blocks`` is set).
    size
        Bytes of every input and of the output.
    receivers
        Sites that get the output's blocks as they are made.
    """

    merge: Merge
    size: int
    receivers: set[str]
    out: bytearray = field(init=False)
    done: int = 0
    sources: dict[str, Source] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out = bytearray(self.size)

    def _available(self, key: str, outputs: Mapping[str, Output]) -> int:
        if key in outputs:
            return len(outputs[key].payload)
        source = self.sources.get(key)
        return 0 if source is None else source.received

    def advance(self, outputs: Mapping[str, Output]) -> tuple[int, int] | None:
        """Merge every block all inputs now hold; the byte range merged, if any.

        ``outputs`` are the job's complete outputs (inputs not in it are streaming).
        """
        assert self.merge.blocks is not None
        inputs = self.merge.inputs
        avail = min(self._available(key, outputs) for key in inputs)
        step = self.merge.blocks.block_bytes
        hi = self.size if avail >= self.size else avail // step * step
        if hi <= self.done:
            return None
        payloads, metas = [], []
        for key in inputs:
            if key in outputs:
                payloads.append(outputs[key].payload)
                metas.append(outputs[key].meta)
            else:
                payloads.append(self.sources[key].buffer)
                metas.append(self.sources[key].meta)
        lo = self.done
        merge_blocks(self.merge.blocks, payloads, metas, self.out, lo, hi)
        self.done = hi
        return lo, hi

    def intact(self, outputs: Mapping[str, Output]) -> bool:
        """Whether every streamed input was accepted as the very buffer the stream read."""
        return all(
            key in outputs and outputs[key].payload is source.buffer
            for key, source in self.sources.items()
        )

    def finish(self, outputs: Mapping[str, Output]) -> Output:
        """The merge's output once every input is complete (the blocks not merged yet)."""
        assert self.merge.blocks is not None
        self.sources.clear()
        if self.advance(outputs) is None and self.done < self.size:
            raise ValueError(f"merge {self.merge.task_id!r} finished with missing blocks")
        metas = [outputs[key].meta for key in self.merge.inputs]
        return Output(bytes(self.out), self.merge.blocks.finish_meta(metas))


class MergeStreams:
    """The streamed merges of one job run (Sol mode with decoupled outputs).

    Parameters
    ----------
    flow
        The job's outputs (complete inputs, consumers, what was pushed where).
    binder
        Where tasks are bound (an upload counts only from the site and attempt bound).
    stats
        The run's counters (``streamed_merges``, ``abandoned_streams``).
    """

    def __init__(self, flow: Dataflow, binder: Binder, stats: dict[str, int]) -> None:
        self.flow = flow
        self.binder = binder
        self.stats = stats
        self.streams: dict[str, Stream] = {}
        self.unstreamed: set[str] = set()

    def on_progress(self, site: str, task_id: str, attempt: int, meta: Mapping[str, Any],
                    buffer: bytearray, received: int) -> list[Action]:
        """Bytes ``[0, received)`` of the output of ``task_id`` have reached the coordinator.

        Every block merge consuming it merges the blocks all its inputs now hold and
        pushes them to its consumers' sites. ``buffer`` is the upload's receive buffer
        (unverified until accepted).
        """
        flow, binder = self.flow, self.binder
        if (task_id in flow.done or binder.bound_to.get(task_id) != site
                or binder.attempts.get(task_id) != attempt):
            return []
        actions: list[Action] = []
        for key in flow.consumers.get(task_id, []):
            merge = flow.merges.get(key)
            if (merge is None or merge.blocks is None or key in flow.done
                    or key in flow.merging):
                continue
            stream = self.streams.get(key) or self._open(merge, len(buffer))
            if stream is None:
                continue
            source = stream.sources.get(task_id)
            if len(buffer) != stream.size or (source is not None and source.buffer is not buffer):
                self.abandon(self.streams.pop(key))
                continue
            stream.sources[task_id] = Source(buffer, received, meta)
            try:
                span = stream.advance(flow.outputs)
            except Exception:  # e.g. metadata the merge cannot use: the whole merge reports it
                _LOGGER.warning("merge %s stops streaming", key, exc_info=True)
                self.abandon(self.streams.pop(key))
                continue
            if span is not None:
                lo, hi = span
                data = bytes(stream.out[lo:hi])
                actions += [PushPart(s, key, lo, data, stream.size)
                            for s in sorted(stream.receivers)]
        return actions

    def _open(self, merge: Merge, size: int) -> Stream | None:
        """Start streaming ``merge`` to the sites of its bound consumers (once per merge)."""
        if merge.task_id in self.unstreamed:
            return None
        self.unstreamed.add(merge.task_id)  # a stream opens once; abandoned, it stays off
        flow = self.flow
        if any(len(flow.outputs[k].payload) != size for k in merge.inputs if k in flow.done):
            return None
        bound_to = self.binder.bound_to
        receivers = {bound_to[c] for c in flow.consumers.get(merge.task_id, [])
                     if c in flow.specs and c in bound_to}
        for site in receivers:
            flow.pushed_to(site).add(merge.task_id)
        self.stats["streamed_merges"] += 1
        stream = self.streams[merge.task_id] = Stream(merge, size, receivers)
        return stream

    def abandon(self, stream: Stream) -> None:
        """Stop streaming: the merge runs whole and is pushed in full when complete (a
        site drops the parts it holds when the whole push begins)."""
        self.stats["abandoned_streams"] += 1
        for site in stream.receivers:
            self.flow.pushed_to(site).discard(stream.merge.task_id)

    def take(self, merge: Merge) -> Stream | None:
        """The stream of a merge whose inputs are all complete, if it can be finished (its
        inputs were accepted from the buffers it read); otherwise it is abandoned."""
        stream = self.streams.pop(merge.task_id, None)
        if stream is not None and not stream.intact(self.flow.outputs):
            self.abandon(stream)
            return None
        return stream

    def sealing(self, stream: Stream, start: int, result: Output) -> list[Action]:
        """Once a streamed merge is finished: its last blocks (from ``start``) and the seal,
        to each receiver that still holds its parts."""
        key = stream.merge.task_id
        actions: list[Action] = []
        for site in sorted(stream.receivers):
            if key in self.flow.pushed_to(site):
                if start < stream.size:
                    actions.append(PushPart(site, key, start, result.payload[start:],
                                            stream.size))
                actions.append(Seal(site, key))
        return actions

    def site_lost(self, site: str) -> None:
        """``site`` is gone: no stream pushes to it any more."""
        for stream in self.streams.values():
            stream.receivers.discard(site)

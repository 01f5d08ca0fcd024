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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fedsys.silo.job import Merge, merge_blocks
from fedsys.silo.task_registry import Output


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

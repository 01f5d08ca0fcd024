"""Outputs as the ``InputPart`` messages that carry them to consuming sites.

Cutting is cheap; the checksum is not (outputs reach hundreds of MiB), so callers pass
the digest they already know (verified on upload, or computed by the merge worker off
the event loop) and nothing here hashes on the coordinator's loop.
"""

from __future__ import annotations

from fedsys.silo.actions import PushPart
from fedsys.silo.task_registry import Output
from fedsys.wire.chunks import DEFAULT_CHUNK_BYTES, split
from fedsys.wire.protos import common_pb2, silo_pb2


def streamed_parts(job_id: str, action: PushPart) -> list[silo_pb2.InputPart]:
    """Blocks of an output still being made, in parts of at most the chunk size."""
    return [
        silo_pb2.InputPart(job_id=job_id, key=action.key, streamed=True, chunk=common_pb2.Chunk(
            offset=action.offset + lo, data=action.data[lo : lo + DEFAULT_CHUNK_BYTES],
            total_bytes=action.total))
        for lo in range(0, len(action.data), DEFAULT_CHUNK_BYTES)
    ]


def input_parts(job_id: str, key: str, output: Output, digest: str | None
                ) -> list[silo_pb2.InputPart]:
    """A finished output cut into checksummed parts (``digest``: its known SHA-256)."""
    meta = output.meta_json()
    return [
        silo_pb2.InputPart(job_id=job_id, key=key, meta_json=meta, chunk=chunk)
        for chunk in split(output.payload, DEFAULT_CHUNK_BYTES, checksum=digest)
    ]

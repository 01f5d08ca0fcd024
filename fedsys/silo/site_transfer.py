"""A site's transfers beside its task stream: large outputs up, pulled inputs down.

A large output goes up on its own ``PutOutput`` stream, in small chunks (a merge that
streams uses it one chunk at a time); a late-binding site pulls a task's input with
``FetchInput``. Both have a deadline and a size limit. One :class:`SiteTransfers` per
connection (it holds that connection's stub).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from fedsys.wire.auth import bearer_metadata
from fedsys.wire.chunks import Reassembler, receive, split
from fedsys.wire.protos import common_pb2, silo_pb2, silo_pb2_grpc

__all__ = ["SiteTransfers"]


class SiteTransfers:
    """Uploads and input pulls of one site connection.

    Parameters
    ----------
    stub
        The connection's coordinator stub.
    token
        The site's bearer token.
    transfer_timeout_s
        Deadline of one upload or pull.
    max_input_bytes
        Largest input the site accepts.
    upload_chunk_bytes
        Chunk size of uploads.
    """

    def __init__(self, stub: silo_pb2_grpc.CoordinatorStub, token: str,
                 transfer_timeout_s: float, max_input_bytes: int,
                 upload_chunk_bytes: int) -> None:
        self.stub = stub
        self.token = token
        self.transfer_timeout_s = transfer_timeout_s
        self.max_input_bytes = max_input_bytes
        self.upload_chunk_bytes = upload_chunk_bytes

    async def fetch_input(self, job_id: str, key: str) -> tuple[bytes, str]:
        """Input ``key`` of job ``job_id``, pulled whole from the coordinator, and its
        metadata."""
        meta = ""

        def chunk_of(part: silo_pb2.InputPart) -> common_pb2.Chunk:
            nonlocal meta
            meta = part.meta_json
            return part.chunk

        call = self.stub.FetchInput(
            silo_pb2.InputRequest(key=key, job_id=job_id),
            metadata=bearer_metadata(self.token), timeout=self.transfer_timeout_s)
        payload = await receive(
            call, Reassembler(self.max_input_bytes),
            idle_timeout_s=self.transfer_timeout_s, chunk_of=chunk_of, to_end=True)
        return payload, meta

    async def upload(self, header: silo_pb2.OutputHeader, payload: bytes) -> bool:
        """Send one output on ``PutOutput``; whether the coordinator counted it."""
        header.send_start_s = time.time()

        async def parts() -> AsyncIterator[silo_pb2.OutputPart]:
            yield silo_pb2.OutputPart(header=header)
            for chunk in split(payload, self.upload_chunk_bytes):
                yield silo_pb2.OutputPart(chunk=chunk)

        ack = await self.stub.PutOutput(
            parts(), metadata=bearer_metadata(self.token), timeout=self.transfer_timeout_s)
        return bool(ack.accepted)

"""The gRPC face of the silo coordinator: the three calls sites make.

``Connect`` is the site's stream (hello, then messages both ways until it ends),
``PutOutput`` receives a large output in checksummed chunks (cut when the site sends
nothing for ``output_idle_timeout_s``; hashed off the event loop), ``FetchInput`` serves an
input to a late-binding site. The token interceptor has already refused unknown callers;
every handler names the caller from its token and hands the work to the coordinator.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc

from fedsys.wire.chunks import ChunkTimeoutError, PayloadError, Reassembler, next_within, receive
from fedsys.wire.protos import common_pb2, silo_pb2, silo_pb2_grpc

if TYPE_CHECKING:
    from fedsys.silo.coordinator import SiloCoordinator, SiteLink


class CoordinatorServicer(silo_pb2_grpc.CoordinatorServicer):
    """gRPC face of :class:`SiloCoordinator` (the interceptor has checked the token)."""

    def __init__(self, coordinator: SiloCoordinator) -> None:
        self.coordinator = coordinator

    async def Connect(  # noqa: N802 (gRPC method name)
        self, request_iterator: AsyncIterator[silo_pb2.SiteMessage],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[silo_pb2.CoordinatorMessage]:
        coordinator = self.coordinator
        site = coordinator.caller(context)
        iterator = request_iterator.__aiter__()
        try:
            first = await asyncio.wait_for(
                iterator.__anext__(), timeout=coordinator.settings.hello_timeout_s
            )
        except (TimeoutError, StopAsyncIteration):
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "no hello from site")
            return
        if first.WhichOneof("kind") != "hello":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "first message must be hello")
            return
        try:
            link = coordinator.register(site, first.hello)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            return
        yield silo_pb2.CoordinatorMessage(welcome=silo_pb2.Welcome(site=site))
        reader = asyncio.create_task(self._read(link, iterator))
        pinger = asyncio.create_task(coordinator.ping_loop(link))
        try:
            while (message := await link.outbox.get()) is not None:
                yield message
        finally:
            reader.cancel()
            pinger.cancel()
            coordinator.lose(link, "stream closed")

    async def _read(self, link: SiteLink, iterator: AsyncIterator[silo_pb2.SiteMessage]) -> None:
        reason = "stream ended"
        try:
            async for message in iterator:
                self.coordinator.on_message(link, message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the stream broke: the site is gone
            reason = f"stream error: {type(exc).__name__}"
        self.coordinator.lose(link, reason)

    async def PutOutput(  # noqa: N802 (gRPC method name)
        self, request_iterator: AsyncIterator[silo_pb2.OutputPart],
        context: grpc.aio.ServicerContext,
    ) -> silo_pb2.OutputAck:
        coordinator = self.coordinator
        site = coordinator.caller(context)
        idle_s = coordinator.settings.output_idle_timeout_s
        assembler = Reassembler(coordinator.settings.max_output_bytes)
        parts = aiter(request_iterator)
        try:
            first = await next_within(parts, idle_s)
            if first is None:
                raise PayloadError("output without header")
            if first.WhichOneof("kind") != "header":
                raise PayloadError("output chunk before its header")
            header = first.header
            payload = await receive(
                parts, assembler, idle_timeout_s=idle_s, chunk_of=_output_chunk, to_end=True,
                on_chunk=lambda progress: coordinator.output_progress(site, header, progress))
        except ChunkTimeoutError as exc:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc))
            raise AssertionError("unreachable") from exc
        except PayloadError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise AssertionError("unreachable") from exc
        accepted = coordinator.accept_output(site, header, payload, assembler.sha256)
        return silo_pb2.OutputAck(accepted=accepted)

    async def FetchInput(  # noqa: N802 (gRPC method name)
        self, request: silo_pb2.InputRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[silo_pb2.InputPart]:
        coordinator = self.coordinator
        site = coordinator.caller(context)
        parts = coordinator.input_parts(site, request.job_id, request.key)
        if parts is None:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"no task bound to site {site!r} consumes {request.key!r}",
            )
            return
        for part in parts:
            yield part


def _output_chunk(part: silo_pb2.OutputPart) -> common_pb2.Chunk:
    if part.WhichOneof("kind") != "chunk":
        raise PayloadError("an output has one header, before its chunks")
    return part.chunk

"""The one chunk-stream receiver, behind a real grpc.aio server on a loopback port."""

import asyncio
import time

import grpc
import pytest

from fedsys.wire.chunks import (
    ChunkTimeoutError,
    PayloadError,
    Reassembler,
    StreamCutError,
    receive,
    split,
)
from fedsys.wire.protos import silo_pb2, silo_pb2_grpc
from fedsys.wire.transport import ChannelSecurity, ServerSecurity, bind, make_server, open_channel

IDLE_S = 0.5
MAX_BYTES = 10_000


class Receiver(silo_pb2_grpc.CoordinatorServicer):
    """PutOutput as the coordinator receives it: a header, then chunks through ``receive``."""

    async def PutOutput(self, request_iterator, context):  # noqa: N802 (gRPC method name)
        parts = aiter(request_iterator)
        await anext(parts)  # the header
        try:
            payload = await receive(
                parts,
                Reassembler(MAX_BYTES),
                idle_timeout_s=IDLE_S,
                chunk_of=lambda part: part.chunk,
                to_end=True,
            )
        except ChunkTimeoutError as exc:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc))
        except PayloadError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return silo_pb2.OutputAck(accepted=len(payload) > 0)


async def _put(parts, timeout_s: float = 20.0):
    server = make_server()
    silo_pb2_grpc.add_CoordinatorServicer_to_server(Receiver(), server)
    port = bind(server, "127.0.0.1", 0, ServerSecurity(insecure=True))
    await server.start()
    try:
        async with open_channel(f"127.0.0.1:{port}", ChannelSecurity(insecure=True)) as channel:
            stub = silo_pb2_grpc.CoordinatorStub(channel)
            return await stub.PutOutput(parts, timeout=timeout_s)
    finally:
        await server.stop(grace=None)


def _header():
    return silo_pb2.OutputPart(header=silo_pb2.OutputHeader(task_id="t"))


def test_whole_stream_is_received_and_acknowledged():
    data = bytes(range(256)) * 30

    async def parts():
        yield _header()
        for chunk in split(data, chunk_bytes=1000):
            yield silo_pb2.OutputPart(chunk=chunk)

    assert asyncio.run(_put(parts())).accepted


def test_sender_silent_mid_stream_is_cut_within_the_inactivity_deadline():
    data = b"x" * 5000

    async def parts():
        yield _header()
        yield silo_pb2.OutputPart(chunk=next(split(data, chunk_bytes=1000)))
        await asyncio.sleep(30)  # goes silent, keeps the stream open

    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        asyncio.run(_put(parts()))
    elapsed = time.monotonic() - started
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "no chunk for 0.5 s" in caught.value.details()
    assert elapsed < 10  # the server cut it, not the client's 20 s deadline


def test_oversize_stream_is_refused_at_its_first_chunk():
    async def parts():
        yield _header()
        for chunk in split(b"y" * (MAX_BYTES + 1), chunk_bytes=1000):
            yield silo_pb2.OutputPart(chunk=chunk)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        asyncio.run(_put(parts()))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"exceeds the limit of {MAX_BYTES}" in caught.value.details()


async def _stream(items):
    for item in items:
        yield item


def _receive(items, **kw):
    kw.setdefault("idle_timeout_s", 5.0)
    return asyncio.run(receive(_stream(items), Reassembler(MAX_BYTES), **kw))


def test_stream_that_ends_early_is_cut_not_refused():
    chunks = list(split(b"z" * 3000, chunk_bytes=1000))
    with pytest.raises(StreamCutError, match="after 2000 bytes"):
        _receive(chunks[:2])
    with pytest.raises(StreamCutError, match="before its first chunk"):
        _receive([])


def test_chunks_past_the_last_and_empty_chunks_are_refused():
    chunks = list(split(b"z" * 3000, chunk_bytes=1000))
    with pytest.raises(PayloadError, match="past the payload's last"):
        _receive([*chunks, chunks[-1]], to_end=True)
    empty = type(chunks[0])(offset=0, data=b"", total_bytes=3000, sha256=chunks[0].sha256)
    with pytest.raises(PayloadError, match="empty chunk"):
        _receive([empty, *chunks])


def test_checksum_and_assigned_digest_are_checked():
    data = b"w" * 2500
    assert _receive(list(split(data, chunk_bytes=1000))) == data
    with pytest.raises(PayloadError, match="checksum mismatch"):
        _receive(list(split(data, chunk_bytes=1000)), sha256="0" * 64)


def test_silence_raises_a_timeout_error():
    async def silent():
        yield next(split(b"v" * 2000, chunk_bytes=1000))
        await asyncio.sleep(30)
        yield None

    async def scenario():
        return await receive(silent(), Reassembler(MAX_BYTES), idle_timeout_s=0.2)

    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"no chunk for 0\.2 s"):
        asyncio.run(scenario())
    assert time.monotonic() - started < 5

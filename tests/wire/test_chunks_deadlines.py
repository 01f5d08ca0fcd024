"""Transfer deadlines (inactivity and total from bytes and a minimum rate) and lent slots."""

import asyncio
import time

import grpc
import pytest

from fedsys.wire.chunks import (
    ChunkTimeoutError,
    LendingSlot,
    Reassembler,
    TransferClock,
    TransferTooSlowError,
    receive,
    split,
)
from fedsys.wire.protos import silo_pb2, silo_pb2_grpc
from fedsys.wire.transport import ChannelSecurity, ServerSecurity, bind, make_server, open_channel

MAX_BYTES = 100_000


async def _paced(data: bytes, gap_s: float, chunk_bytes: int = 1000, stop_after: int | None = None):
    for index, chunk in enumerate(split(data, chunk_bytes=chunk_bytes)):
        if stop_after is not None and index >= stop_after:
            await asyncio.sleep(60)  # silent, stream left open
        yield chunk
        await asyncio.sleep(gap_s)


def test_slow_sender_is_cut_at_its_total_deadline_though_never_idle():
    data = b"s" * 10_000  # 10 chunks, one every 0.4 s: 2,500 bytes/s

    async def scenario():
        return await receive(
            _paced(data, 0.4), Reassembler(MAX_BYTES), idle_timeout_s=1.0, min_bytes_per_s=5_000
        )

    started = time.monotonic()
    with pytest.raises(TransferTooSlowError, match=r"10000 bytes not transferred within 3\.0 s"):
        asyncio.run(scenario())
    assert 2.5 < time.monotonic() - started < 4.0  # 1 s grace + 10,000 / 5,000


def test_a_sender_at_the_minimum_rate_gets_its_payload_through():
    data = bytes(range(256)) * 20  # 5,120 bytes, 6 chunks every 0.1 s: ~10 kB/s

    async def scenario():
        return await receive(
            _paced(data, 0.1), Reassembler(MAX_BYTES), idle_timeout_s=1.0, min_bytes_per_s=5_000
        )

    assert asyncio.run(scenario()) == data


def test_clock_pauses_while_the_receiver_waits():
    clock = TransferClock(idle_s=0.3, min_bytes_per_s=1_000, total_bytes=100)
    assert clock.limit_s == pytest.approx(0.4)
    clock.pause()
    time.sleep(0.5)
    clock.resume()
    assert clock.elapsed_s() < 0.1
    assert clock.wait_s() == pytest.approx(0.3, abs=0.05)
    time.sleep(0.45)
    with pytest.raises(TransferTooSlowError):
        clock.wait_s()


def test_a_silent_sender_lends_its_slot_and_a_fast_one_finishes_first():
    data = b"q" * 5_000

    async def scenario():
        pool = asyncio.Semaphore(1)
        silent_slot = LendingSlot(pool, lend_after_s=0.1)
        fast_slot = LendingSlot(pool, lend_after_s=0.1)
        await silent_slot.take()  # the silent one was granted first

        async def silent():
            try:
                return await receive(
                    _paced(data, 0.0, stop_after=1),
                    Reassembler(MAX_BYTES),
                    idle_timeout_s=1.5,
                    slot=silent_slot,
                )
            finally:
                silent_slot.release()

        async def fast():
            await asyncio.sleep(0.05)
            await fast_slot.take()  # waits while the silent one still holds the slot
            took = time.monotonic()
            try:
                payload = await receive(
                    _paced(data, 0.0), Reassembler(MAX_BYTES), idle_timeout_s=1.5, slot=fast_slot
                )
                assert fast_slot.held  # the caller holds it after the last chunk
                return payload, took
            finally:
                fast_slot.release()

        started = time.monotonic()
        results = await asyncio.gather(silent(), fast(), return_exceptions=True)
        return started, results, pool, silent_slot

    started, (silent_result, fast_result), pool, silent_slot = asyncio.run(scenario())
    payload, took = fast_result
    assert payload == data
    assert took - started < 1.0  # slot lent after 0.1 s of silence, not held for 1.5 s
    assert isinstance(silent_result, ChunkTimeoutError)
    assert "no chunk for 1.5 s" in str(silent_result)
    assert silent_slot.lent >= 1
    assert not pool.locked()  # every slot back in the pool


class SlowReceiver(silo_pb2_grpc.CoordinatorServicer):
    async def PutOutput(self, request_iterator, context):  # noqa: N802 (gRPC method name)
        parts = aiter(request_iterator)
        await anext(parts)
        try:
            payload = await receive(
                parts,
                Reassembler(MAX_BYTES),
                idle_timeout_s=1.0,
                chunk_of=lambda part: part.chunk,
                to_end=True,
                min_bytes_per_s=4_000,
            )
        except ChunkTimeoutError as exc:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc))
        return silo_pb2.OutputAck(accepted=len(payload) > 0)


def test_slow_grpc_stream_is_cut_by_the_server():
    async def parts():
        yield silo_pb2.OutputPart(header=silo_pb2.OutputHeader(task_id="t"))
        async for chunk in _paced(b"p" * 8_000, 0.5):  # 2,000 bytes/s
            yield silo_pb2.OutputPart(chunk=chunk)

    async def scenario():
        server = make_server()
        silo_pb2_grpc.add_CoordinatorServicer_to_server(SlowReceiver(), server)
        port = bind(server, "127.0.0.1", 0, ServerSecurity(insecure=True))
        await server.start()
        try:
            async with open_channel(f"127.0.0.1:{port}", ChannelSecurity(insecure=True)) as ch:
                return await silo_pb2_grpc.CoordinatorStub(ch).PutOutput(parts(), timeout=20)
        finally:
            await server.stop(grace=None)

    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        asyncio.run(scenario())
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "slower than 4000 bytes/s" in caught.value.details()
    assert time.monotonic() - started < 6  # 1 s + 8,000 / 4,000, not the 20 s call deadline


def test_without_wait_first_the_deadlines_start_with_the_first_chunk():
    data = b"f" * 3_000

    async def late_then_fast():
        await asyncio.sleep(0.6)  # queued by the sender (longer than the 0.3 s deadline)
        for chunk in split(data, chunk_bytes=1000):
            yield chunk

    async def scenario(wait_first: bool):
        return await receive(
            late_then_fast(), Reassembler(MAX_BYTES), idle_timeout_s=0.3, wait_first=wait_first
        )

    assert asyncio.run(scenario(False)) == data
    with pytest.raises(ChunkTimeoutError, match=r"no chunk for 0\.3 s"):
        asyncio.run(scenario(True))

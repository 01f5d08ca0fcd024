"""Large payloads as streams of checksummed chunks, with a size limit on the receiving side.

gRPC refuses messages above its limit, and one message per model would make the
receiver hold it twice; a model or update therefore travels as ``Chunk`` messages of
at most ``chunk_bytes`` each. The receiver checks the announced size against its own
limit before buffering anything and the SHA-256 of the whole payload before use.

Every handler that takes a chunk stream receives it with :func:`receive`: one place for
the size limit, the deadlines (:class:`TransferClock`: a sender silent for the
inactivity deadline, or slower than a minimum rate over the whole payload, is cut; it
does not hold a buffer and an upload slot for a round), the lending of a receive slot
while the sender is quiet (:class:`LendingSlot`: a slow sender never blocks a fast one)
and the checksum, which runs on a worker thread so the event loop never hashes a payload.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import TypeVar

from fedsys.wire.protos import common_pb2

DEFAULT_CHUNK_BYTES = 256 * 1024
DEFAULT_MIN_BYTES_PER_S = 1024.0
"""Slowest transfer :func:`receive` accepts unless told otherwise (8 kbit/s: any live link)."""
M = TypeVar("M")


class PayloadError(ValueError):
    """A chunked payload was oversize, out of order, truncated or failed its checksum."""


class StreamCutError(PayloadError):
    """The stream ended before the payload's last chunk (a lost link, or a lying sender)."""


class ChunkTimeoutError(TimeoutError):
    """No message arrived within the receiver's inactivity deadline."""


class TransferTooSlowError(ChunkTimeoutError):
    """The payload did not arrive within its total deadline (bytes / minimum rate + grace)."""


class TransferClock:
    """The deadlines of one transfer: inactivity, and total sized from its bytes.

    A transfer of ``n`` bytes may take ``idle_s + n / min_bytes_per_s`` seconds in all
    (the inactivity deadline doubles as the grace for a link's start-up), and no wait
    for one message may exceed ``idle_s``. Time the receiver itself spends waiting (for
    a slot, see :class:`LendingSlot`) is not the sender's: :meth:`pause` stops the clock.

    Parameters
    ----------
    idle_s
        Longest wait for one message; ``None``: no deadline here (the call's own applies).
    min_bytes_per_s
        Slowest acceptable average rate; ``None``: no total deadline.
    total_bytes
        The payload's size, if known now (else :meth:`size` sets it at the first chunk).
    """

    def __init__(
        self,
        idle_s: float | None,
        min_bytes_per_s: float | None = None,
        total_bytes: int | None = None,
    ) -> None:
        if min_bytes_per_s is not None and min_bytes_per_s <= 0:
            raise ValueError(f"min_bytes_per_s must be > 0, got {min_bytes_per_s}")
        self.idle_s = idle_s
        self.min_bytes_per_s = min_bytes_per_s
        self.total_bytes: int | None = None
        self.limit_s: float | None = None
        self._started = time.monotonic()
        self._paused_at: float | None = None
        if total_bytes is not None:
            self.size(total_bytes)

    def size(self, total_bytes: int) -> None:
        """Set the payload's size, which sizes the total deadline."""
        self.total_bytes = int(total_bytes)
        if self.idle_s is not None and self.min_bytes_per_s is not None:
            self.limit_s = self.idle_s + self.total_bytes / self.min_bytes_per_s

    def elapsed_s(self) -> float:
        """Seconds the transfer has taken so far (pauses excluded)."""
        now = self._paused_at if self._paused_at is not None else time.monotonic()
        return now - self._started

    def pause(self) -> None:
        """Stop the clock (the receiver is the one waiting)."""
        if self._paused_at is None:
            self._paused_at = time.monotonic()

    def resume(self) -> None:
        """Restart the clock after :meth:`pause`."""
        if self._paused_at is not None:
            self._started += time.monotonic() - self._paused_at
            self._paused_at = None

    def wait_s(self) -> float | None:
        """The longest wait allowed for the next message (``None``: unbounded).

        Raises
        ------
        TransferTooSlowError
            If the total deadline has passed.
        """
        if self.limit_s is None:
            return self.idle_s
        left = self.limit_s - self.elapsed_s()
        if left <= 0:
            raise self.too_slow()
        return left if self.idle_s is None else min(self.idle_s, left)

    def expired(self, waited_s: float | None) -> ChunkTimeoutError:
        """The error for a wait of ``waited_s`` (from :meth:`wait_s`) that ran out."""
        shortened = self.idle_s is None or (waited_s is not None and waited_s < self.idle_s)
        if self.limit_s is not None and shortened:  # the total deadline bounded the wait
            return self.too_slow()
        return ChunkTimeoutError(f"no chunk for {waited_s:g} s: stream cut")

    def too_slow(self) -> TransferTooSlowError:
        """The error of a missed total deadline."""
        return TransferTooSlowError(
            f"{self.total_bytes} bytes not transferred within {self.limit_s:.1f} s "
            f"(slower than {self.min_bytes_per_s:g} bytes/s): stream cut"
        )


class LendingSlot:
    """One receive slot of a bounded pool, lent back while its sender is quiet.

    A receiver holds the slot while chunks flow; when the next chunk has not come after
    ``lend_after_s``, :func:`receive` returns the slot to the pool (a waiting transfer
    takes it) and takes it again once the chunk arrives. Slots are thus held by chunks
    in flight, never by a silent or slow connection; the buffer of a lent transfer stays.
    """

    def __init__(self, pool: asyncio.Semaphore, lend_after_s: float) -> None:
        self.pool = pool
        self.lend_after_s = lend_after_s
        self.held = False
        self.lent = 0
        """How many times the slot was lent back (for logs and tests)."""

    async def take(self) -> None:
        """Hold the slot (waiting for a free one)."""
        if not self.held:
            await self.pool.acquire()
            self.held = True

    def lend(self) -> None:
        """Return the slot to the pool, if held."""
        if self.held:
            self.held = False
            self.lent += 1
            self.pool.release()

    def release(self) -> None:
        """Give the slot back for good (the transfer is over)."""
        if self.held:
            self.held = False
            self.pool.release()


def sha256_hex(data: bytes | memoryview) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def split(
    data: bytes, chunk_bytes: int = DEFAULT_CHUNK_BYTES, checksum: str | None = None
) -> Iterator[common_pb2.Chunk]:
    """Cut ``data`` into ``Chunk`` messages (one empty chunk for an empty payload).

    ``checksum`` saves re-hashing a payload sent many times (a model version).
    """
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be >= 1, got {chunk_bytes}")
    total = len(data)
    digest = checksum if checksum is not None else sha256_hex(data)
    view = memoryview(data)
    offset = 0
    while True:
        piece = bytes(view[offset : offset + chunk_bytes])
        yield common_pb2.Chunk(offset=offset, data=piece, total_bytes=total, sha256=digest)
        offset += len(piece)
        if offset >= total:
            return


class Reassembler:
    """Collects the chunks of one payload into a preallocated buffer and verifies it.

    Parameters
    ----------
    max_bytes
        Largest payload accepted; a larger announced size is refused at the first chunk.
    expected_bytes
        If set, the exact size the payload must have.
    expected_sha256
        If set, the digest the payload must have (besides the one it announces).
    """

    def __init__(
        self,
        max_bytes: int,
        expected_bytes: int | None = None,
        expected_sha256: str | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.expected_bytes = expected_bytes
        self.expected_sha256 = expected_sha256
        self._buffer: bytearray | None = None
        self._received = 0
        self._total = -1
        self._sha256 = ""

    def add(self, chunk: common_pb2.Chunk) -> None:
        """Append one chunk.

        Raises
        ------
        PayloadError
            If the payload is oversize, the size or checksum changes mid-stream, or a
            chunk is out of order or overruns the announced size.
        """
        if self._buffer is None:
            self._start(chunk)
        if chunk.total_bytes != self._total or chunk.sha256 != self._sha256:
            raise PayloadError("chunk announces a different size or checksum than the first")
        if chunk.offset != self._received:
            raise PayloadError(f"chunk at offset {chunk.offset}, expected {self._received}")
        end = self._received + len(chunk.data)
        if end > self._total:
            raise PayloadError(f"chunks overrun the announced {self._total} bytes")
        assert self._buffer is not None
        self._buffer[self._received : end] = chunk.data
        self._received = end

    def _start(self, chunk: common_pb2.Chunk) -> None:
        total = int(chunk.total_bytes)
        if total > self.max_bytes:
            raise PayloadError(f"payload of {total} bytes exceeds the limit of {self.max_bytes}")
        if self.expected_bytes is not None and total != self.expected_bytes:
            raise PayloadError(f"payload announces {total} bytes, expected {self.expected_bytes}")
        if self.expected_sha256 is not None and chunk.sha256 != self.expected_sha256:
            raise PayloadError("payload checksum differs from the one assigned")
        self._total = total
        self._sha256 = chunk.sha256
        self._buffer = bytearray(total)

    @property
    def complete(self) -> bool:
        """Whether every announced byte has arrived."""
        return self._buffer is not None and self._received == self._total

    @property
    def sha256(self) -> str:
        """The payload's checksum as its chunks declared it (verified by :meth:`result`)."""
        return self._sha256

    @property
    def received_bytes(self) -> int:
        """Bytes received so far (in order from offset 0)."""
        return self._received

    def buffer(self) -> bytearray | None:
        """The receive buffer: its first :attr:`received_bytes` are in but NOT verified.

        For a consumer that works on a payload while it streams in (it must check that
        :meth:`result` later accepts this same buffer); ``None`` before the first chunk.
        """
        return self._buffer

    def result(self, sha256: str | None = None) -> bytearray:
        """The verified payload (the receive buffer itself: no copy of a large payload).

        Parameters
        ----------
        sha256
            The digest to check, for chunks sent before it was known (they announce
            none); when the chunks announce one too, both must match.

        Raises
        ------
        PayloadError
            If it is incomplete, carries no checksum, or its SHA-256 differs.
        """
        if self._buffer is None:
            raise PayloadError("no chunk received")
        if not self.complete:
            raise PayloadError(f"payload truncated: {self._received} of {self._total} bytes")
        data = self._buffer
        self._buffer = None
        wanted = {digest for digest in (self._sha256, sha256) if digest}
        if not wanted:
            raise PayloadError("payload carries no checksum")
        actual = sha256_hex(data)
        if any(actual != digest for digest in wanted):
            raise PayloadError("payload checksum mismatch: corrupted in transit")
        return data


def join(chunks: Iterable[common_pb2.Chunk], max_bytes: int) -> bytearray:
    """Reassemble and verify a payload from all its chunks."""
    assembler = Reassembler(max_bytes)
    for chunk in chunks:
        assembler.add(chunk)
    return assembler.result()


async def join_async(
    chunks: AsyncIterable[common_pb2.Chunk],
    max_bytes: int,
    idle_timeout_s: float | None = None,
    sha256: str | None = None,
    min_bytes_per_s: float | None = DEFAULT_MIN_BYTES_PER_S,
    wait_first: bool = True,
) -> bytearray:
    """:func:`join` for a gRPC response stream (read to its end; verified off the loop)."""
    return await receive(
        chunks,
        Reassembler(max_bytes),
        idle_timeout_s=idle_timeout_s,
        to_end=True,
        sha256=sha256,
        min_bytes_per_s=min_bytes_per_s,
        wait_first=wait_first,
    )


async def next_within(messages: AsyncIterator[M], idle_timeout_s: float | None) -> M | None:
    """The next message of a stream, ``None`` at its end.

    Parameters
    ----------
    messages
        The stream (a gRPC request iterator or response call).
    idle_timeout_s
        Longest wait for the message; ``None``: no deadline (the call's own applies).

    Raises
    ------
    ChunkTimeoutError
        If nothing arrived within ``idle_timeout_s``.
    """
    try:
        return await asyncio.wait_for(anext(messages, None), idle_timeout_s)
    except TimeoutError:
        raise ChunkTimeoutError(f"no chunk for {idle_timeout_s:g} s: stream cut") from None


def _same(message: M) -> common_pb2.Chunk:
    assert isinstance(message, common_pb2.Chunk)
    return message


async def receive(
    messages: AsyncIterable[M],
    assembler: Reassembler,
    *,
    idle_timeout_s: float | None,
    chunk_of: Callable[[M], common_pb2.Chunk] | None = None,
    on_chunk: Callable[[Reassembler], None] | None = None,
    to_end: bool = False,
    sha256: str | None = None,
    min_bytes_per_s: float | None = DEFAULT_MIN_BYTES_PER_S,
    slot: LendingSlot | None = None,
    wait_first: bool = True,
) -> bytearray:
    """Receive a payload's chunks from a stream into ``assembler`` and verify it.

    The limits are the assembler's (``max_bytes``, and any expected size or digest:
    checked at the first chunk, before anything is buffered); every chunk of a
    non-empty payload must carry bytes, so a stream cannot last longer than its
    payload. The SHA-256 runs on a worker thread.

    Parameters
    ----------
    messages
        The stream (or a call to iterate), positioned after any header.
    assembler
        Collects the chunks and holds the limits.
    idle_timeout_s
        Cut the stream when no message arrives for this long (``None``: no deadline
        here; only for a call that has its own).
    min_bytes_per_s
        Cut the stream when the payload (its size announced by the first chunk) is not
        all in after ``idle_timeout_s + size / min_bytes_per_s`` (see
        :class:`TransferClock`); ``None``: no total deadline.
    wait_first
        ``False``: the first chunk may take as long as the call allows, and the
        deadlines start with it (a sender that queues transfers before serving one).
    slot
        A slot the caller holds; lent back while the sender is quiet and taken again
        before each chunk is stored and before returning (the caller still holds it then).
    chunk_of
        The chunk inside a message; raises (the caller's refusal) for a message that is
        not a chunk. Default: the messages are chunks.
    on_chunk
        Called after each chunk (progress, streaming consumers).
    to_end
        Read until the stream ends (a client stream the sender closes), refusing any
        chunk past the last; otherwise stop at the last chunk.
    sha256
        A digest the payload must also have (see :meth:`Reassembler.result`).

    Returns
    -------
    bytearray
        The verified payload.

    Raises
    ------
    PayloadError
        Oversize, out of order, empty chunk, chunks past the last, or a bad checksum.
    StreamCutError
        The stream ended before the last chunk.
    ChunkTimeoutError
        The sender went silent for ``idle_timeout_s``.
    TransferTooSlowError
        The payload missed its total deadline.
    """
    extract = chunk_of or _same
    stream = aiter(messages)
    clock = TransferClock(idle_timeout_s if wait_first else None, min_bytes_per_s)
    while to_end or not assembler.complete:
        message = await _next_in_time(stream, clock, slot)
        if message is None:
            break
        chunk = extract(message)
        if assembler.complete:
            raise PayloadError("chunks past the payload's last")
        if not chunk.data and chunk.total_bytes > 0:
            raise PayloadError("an empty chunk in a non-empty payload")
        if clock.total_bytes is None:
            if not wait_first:  # the deadlines start with the first chunk
                clock = TransferClock(idle_timeout_s, min_bytes_per_s)
            clock.size(chunk.total_bytes)
        assembler.add(chunk)
        if on_chunk is not None:
            on_chunk(assembler)
    if not assembler.complete:
        if assembler.received_bytes == 0 and assembler.buffer() is None:
            raise StreamCutError("the stream ended before its first chunk")
        raise StreamCutError(
            f"the stream ended after {assembler.received_bytes} bytes, before its last chunk"
        )
    return await asyncio.to_thread(assembler.result, sha256)


async def _next_in_time(
    stream: AsyncIterator[M], clock: TransferClock, slot: LendingSlot | None
) -> M | None:
    """The next message within the clock's deadlines, lending ``slot`` while waiting long."""
    wait = clock.wait_s()
    if slot is None or not slot.held:
        try:
            message = await asyncio.wait_for(anext(stream, None), wait)
        except TimeoutError:
            raise clock.expired(wait) from None
    else:
        pending = asyncio.ensure_future(anext(stream, None))
        try:
            first = slot.lend_after_s if wait is None else min(slot.lend_after_s, wait)
            done, _ = await asyncio.wait({pending}, timeout=first)
            if not done:
                if wait is not None and wait <= slot.lend_after_s:
                    raise clock.expired(wait)
                slot.lend()  # quiet sender: a waiting transfer may use the slot meanwhile
                rest = None if wait is None else wait - first
                done, _ = await asyncio.wait({pending}, timeout=rest)
                if not done:
                    raise clock.expired(wait)
            message = pending.result()
        finally:
            if not pending.done():
                pending.cancel()
    if slot is not None and not slot.held:
        clock.pause()  # waiting for a slot is the receiver's time, not the sender's
        try:
            await slot.take()
        finally:
            clock.resume()
    return message

"""Large payloads as streams of checksummed chunks, with a size limit on the receiving side.

gRPC refuses messages above its limit, and one message per model would make the
receiver hold it twice; a model or update therefore travels as ``Chunk`` messages of
at most ``chunk_bytes`` each. The receiver checks the announced size against its own
limit before buffering anything and the SHA-256 of the whole payload before use.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable, Iterator

from fedsys.wire.protos import common_pb2

DEFAULT_CHUNK_BYTES = 256 * 1024


class PayloadError(ValueError):
    """A chunked payload was oversize, out of order, truncated or failed its checksum."""


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


async def join_async(chunks: AsyncIterator[common_pb2.Chunk], max_bytes: int) -> bytearray:
    """:func:`join` for a gRPC response stream."""
    assembler = Reassembler(max_bytes)
    async for chunk in chunks:
        assembler.add(chunk)
    return assembler.result()

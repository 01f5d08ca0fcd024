import hashlib

import pytest
import torch

from fedsys.core.weights import ModelWeights
from fedsys.wire.chunks import PayloadError, Reassembler, join, split
from fedsys.wire.tensors import layout_of, weights_from_bytes, weights_to_bytes


def test_split_join_round_trip_with_checksum():
    data = bytes(range(256)) * 1000
    chunks = list(split(data, chunk_bytes=10_000))
    assert len(chunks) == 26
    assert all(c.sha256 == hashlib.sha256(data).hexdigest() for c in chunks)
    assert join(chunks, max_bytes=len(data)) == data


def test_empty_payload_is_one_chunk():
    assert join(split(b""), max_bytes=0) == b""


def test_oversize_payload_is_refused_before_buffering():
    chunks = split(b"x" * 1000, chunk_bytes=100)
    assembler = Reassembler(max_bytes=999)
    with pytest.raises(PayloadError, match="exceeds the limit of 999"):
        assembler.add(next(chunks))


def test_corrupted_chunk_fails_checksum():
    chunks = list(split(b"abcdefgh" * 100, chunk_bytes=64))
    chunks[3].data = b"Z" * len(chunks[3].data)
    with pytest.raises(PayloadError, match="checksum mismatch"):
        join(chunks, max_bytes=10_000)


def test_truncated_and_reordered_streams_are_refused():
    chunks = list(split(b"q" * 300, chunk_bytes=100))
    with pytest.raises(PayloadError, match="truncated"):
        join(chunks[:2], max_bytes=1000)
    with pytest.raises(PayloadError, match="offset"):
        join([chunks[0], chunks[2]], max_bytes=1000)


def test_expected_size_and_digest_are_enforced():
    chunks = list(split(b"w" * 50))
    with pytest.raises(PayloadError, match="expected 60"):
        Reassembler(1000, expected_bytes=60).add(chunks[0])
    with pytest.raises(PayloadError, match="checksum differs"):
        Reassembler(1000, expected_sha256="0" * 64).add(chunks[0])


def test_weights_survive_the_wire_exactly():
    weights = ModelWeights.from_tensors({"a.weight": torch.randn(3, 4), "a.bias": torch.randn(4)})
    back = weights_from_bytes(weights_to_bytes(weights), layout_of(weights))
    assert back.specs == weights.specs
    assert torch.equal(back.flat, weights.flat)
    with pytest.raises(ValueError, match="do not hold 16"):
        weights_from_bytes(weights_to_bytes(weights)[:-4], layout_of(weights))


def test_a_payload_streamed_before_its_digest_is_checked_against_the_seal():
    data = bytes(range(200)) * 10
    digest = hashlib.sha256(data).hexdigest()
    chunks = [c for c in split(data, chunk_bytes=300)]
    for chunk in chunks:
        chunk.sha256 = ""  # sent while the payload was still being made
    assembler = Reassembler(max_bytes=len(data))
    for chunk in chunks[:3]:
        assembler.add(chunk)
    assert assembler.received_bytes == 900
    assert bytes(assembler.buffer()[:900]) == data[:900]  # readable before it is verified
    for chunk in chunks[3:]:
        assembler.add(chunk)
    assert assembler.result(digest) == data
    for wrong in (None, hashlib.sha256(b"other").hexdigest()):
        again = Reassembler(max_bytes=len(data))
        for chunk in chunks:
            again.add(chunk)
        with pytest.raises(PayloadError):
            again.result(wrong)

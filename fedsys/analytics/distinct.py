"""Distinct counts across sites: canonical value hashes, exact while small, HLL beyond.

A site's partial of ``APPROX_COUNT_DISTINCT(x)`` hashes each distinct value to 64 bits
from a *canonical* form of it, so one value hashes alike whatever type a site stores it
as (``3`` as BIGINT and ``3.0`` as DOUBLE, ``-0.0`` and ``0.0``: equal in SQL, one hash).
Up to :data:`EXACT_LIMIT` distinct values the partial is the sorted set of hashes, and
a merge whose union stays that small counts it exactly (64-bit hashes collide with
probability below 1e-13 at that size); beyond, it is an HLL sketch fed the same hashes.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["EXACT_LIMIT", "HLL_LG_K", "canonical_hashes", "distinct_partial",
           "merge_distinct"]

EXACT_LIMIT = 1024
"""Most distinct values a partial (and a merge) keeps exactly: 8 KiB of hashes."""
HLL_LG_K = 12
"""HLL log2 of buckets: relative standard error about 1.6%."""
_EXACT_MAGIC = b"FSXD"
"""First bytes of an exact partial (an HLL serialization never starts so)."""
_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)
_INT_TAG, _FLOAT_TAG, _TIME_TAG = (np.uint64(t) for t in
                                   (0x243F6A8885A308D3, 0x13198A2E03707344,
                                    0xA4093822299F31D0))


def _mix(bits: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer over uint64 (a bijection that spreads every input bit)."""
    with np.errstate(over="ignore"):
        z = (bits + np.uint64(0x9E3779B97F4A7C15)) & _MASK
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
        return z ^ (z >> np.uint64(31))


def _tagged(bits: np.ndarray, tag: np.uint64) -> np.ndarray:
    return _mix(_mix(bits) ^ tag)


def _number_hashes(values: np.ndarray) -> np.ndarray:
    """Hashes of numbers: an integral value hashes as its integer, whatever its type."""
    if values.dtype.kind in "bi" or (values.dtype.kind == "u" and values.dtype.itemsize < 8):
        return _tagged(values.astype(np.int64).view(np.uint64), _INT_TAG)
    floats = values.astype(np.float64)
    integral = np.isfinite(floats) & (np.floor(floats) == floats) & (np.abs(floats) < 2.0**63)
    out = np.empty(len(floats), dtype=np.uint64)
    out[integral] = _tagged(floats[integral].astype(np.int64).view(np.uint64), _INT_TAG)
    rest = floats[~integral]
    rest = np.where(np.isnan(rest), np.float64("nan"), rest)  # one NaN
    out[~integral] = _tagged(rest.view(np.uint64), _FLOAT_TAG)
    return out


def _other_hash(value: Any) -> int:
    """Hash of a value that is not a plain number (strings, dates, big integers...)."""
    if isinstance(value, (dt.datetime, dt.date)):
        if not isinstance(value, dt.datetime):
            value = dt.datetime(value.year, value.month, value.day)
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        micros = (value - dt.datetime(1970, 1, 1)) // dt.timedelta(microseconds=1)
        return int(_time_hashes(np.array([micros], dtype=np.int64))[0])
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = b"b" + bytes(value)
    else:
        data = b"s" + str(value).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _time_hashes(micros: np.ndarray) -> np.ndarray:
    return _tagged(micros.astype(np.int64).view(np.uint64), _TIME_TAG)


def canonical_hashes(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """64-bit hashes (uint64) of ``values``' canonical forms, one per value.

    Equal SQL values hash equal across types: integral floats as integers, every
    date and timestamp as microseconds since the epoch, DECIMALs as numbers.
    """
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf" and not (
            values.dtype.kind == "u" and values.dtype.itemsize >= 8):
        return _number_hashes(values)
    if isinstance(values, np.ndarray) and values.dtype.kind == "M":
        return _time_hashes(values.astype("datetime64[us]").astype(np.int64))
    out = np.empty(len(values), dtype=np.uint64)
    for i, value in enumerate(values.tolist() if isinstance(values, np.ndarray) else values):
        if isinstance(value, decimal.Decimal):
            value = int(value) if value == value.to_integral_value() else float(value)
        if isinstance(value, (bool, int)) and -(2**63) <= value < 2**63:
            out[i] = _number_hashes(np.array([value], dtype=np.int64))[0]
        elif isinstance(value, float):
            out[i] = _number_hashes(np.array([value], dtype=np.float64))[0]
        elif isinstance(value, (np.datetime64,)):
            out[i] = _time_hashes(np.array([value]).astype("datetime64[us]")
                                  .astype(np.int64))[0]
        else:
            out[i] = _other_hash(value)
    return out


def distinct_partial(values: Sequence[Any] | np.ndarray | None) -> bytes:
    """A site's partial of a distinct count: its exact hash set, or an HLL sketch."""
    hashes = np.unique(canonical_hashes(values if values is not None else []))
    if len(hashes) <= EXACT_LIMIT:
        return _EXACT_MAGIC + hashes.astype("<u8").tobytes()
    return bytes(_hll_of(hashes).serialize_compact())


def merge_distinct(blobs: Sequence[bytes | None]) -> int:
    """The distinct count of the union of the partials (exact while the union is small).

    Raises
    ------
    ValueError
        If a partial is neither an exact set nor an HLL sketch.
    """
    import datasketches as ds

    exact: list[np.ndarray] = []
    sketches = []
    for blob in blobs:
        if not blob:
            continue
        if blob.startswith(_EXACT_MAGIC):
            body = blob[len(_EXACT_MAGIC):]
            if len(body) % 8:
                raise ValueError("malformed distinct-count partial")
            exact.append(np.frombuffer(body, dtype="<u8"))
        else:
            sketches.append(ds.hll_sketch.deserialize(blob))
    hashes = np.unique(np.concatenate(exact)) if exact else np.empty(0, dtype=np.uint64)
    if not sketches and len(hashes) <= EXACT_LIMIT:
        return len(hashes)
    union = ds.hll_union(HLL_LG_K)
    for sketch in sketches:
        union.update(sketch)
    if len(hashes):
        union.update(_hll_of(hashes))
    return round(union.get_result().get_estimate())


def _hll_of(hashes: np.ndarray) -> Any:
    import datasketches as ds

    sketch = ds.hll_sketch(HLL_LG_K)
    for value in hashes.view(np.int64).tolist():  # the hash, as a signed 64-bit integer
        sketch.update(value)
    return sketch

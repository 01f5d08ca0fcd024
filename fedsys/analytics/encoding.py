"""Partial-aggregate tables on the wire: zlib-compressed JSON, sketches as base64.

No pickle: values become JSON numbers, strings (dates as ISO text) or lists; DECIMAL
becomes a float; a HISTOGRAM map becomes a list of ``[value, count]`` pairs.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import uuid
import zlib
from collections.abc import Sequence
from typing import Any

__all__ = ["decode_table", "encode_table", "to_json_value"]

MAX_DECODED_BYTES = 256 * 1024 * 1024


def to_json_value(value: Any) -> Any:
    """A DuckDB result value as a JSON value."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"b64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dict):
        return [[to_json_value(k), to_json_value(v)] for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    raise ValueError(f"cannot send a value of type {type(value).__name__}")


def encode_table(columns: Sequence[str], types: Sequence[str], rows: Sequence[Sequence[Any]]
                 ) -> bytes:
    """A partial table as compressed JSON bytes."""
    body = {"columns": list(columns), "types": list(types),
            "rows": [[to_json_value(v) for v in row] for row in rows]}
    return zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 1)


def decode_table(payload: bytes) -> tuple[list[str], list[str], list[list[Any]]]:
    """Columns, types and rows of an encoded table (sketch blobs back to bytes).

    Raises
    ------
    ValueError
        If the payload is not an encoded table.
    """
    try:
        decoder = zlib.decompressobj()
        raw = decoder.decompress(payload, MAX_DECODED_BYTES)
        if decoder.unconsumed_tail:
            raise ValueError("a partial table is larger than the limit")
        body = json.loads(raw)
    except (zlib.error, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed partial table: {exc}") from None
    rows = [[_blob(v) for v in row] for row in body["rows"]]
    return list(body["columns"]), list(body["types"]), rows


def _blob(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    return value

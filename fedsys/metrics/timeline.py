"""Per-round client timelines: who did what, when, on the round's clock.

A runtime that knows each selected client's phases puts one timeline in its round
record's ``extra`` under :data:`TIMELINE_KEY`; the run folder moves it to
``clients.jsonl`` (one line per round) so that ``rounds.jsonl`` stays small for the
readers that only want accuracy and durations. Format version
:data:`TIMELINE_VERSION` (documented in ``docs/dashboard.md``)::

    {"v": 1, "round_idx": 3, "start_s": 812.4, "end_s": 861.0, "available": 412,
     "closed_by": 17,
     "clients": [[17, 0.0, 1.2, 40.3, 2.1, "c", 43.6], ...],
     "selector": {...}}

Each client row is ``[client_id, launch_s, download_s, compute_s, upload_s, outcome,
end_s]`` with times relative to the round's ``start_s`` and rounded to the
millisecond; ``outcome`` is one of :data:`OUTCOME_CODES`' letters; ``end_s`` is when
the update arrived, the client dropped out, or (a straggler) when it would have
arrived. ``closed_by`` is the client whose arrival closed the round (the K-th in a
sync round; ``null`` when the deadline or the last answer closed it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from fedsys.metrics.records import RoundRecord
from fedsys.metrics.writers import append_json_lines, atomic_write_text, dumps

TIMELINE_KEY = "timeline"
"""Key of a round record's ``extra`` that holds the round's timeline."""
TIMELINE_VERSION = 1
OUTCOME_CODES = {"completed": "c", "rejected": "r", "dropped": "d", "straggled": "s"}
"""One letter per client outcome, as the selector reports it."""


def client_row(
    client_id: int,
    launch_s: float,
    download_s: float,
    compute_s: float,
    upload_s: float,
    outcome: str,
    end_s: float,
) -> list[Any]:
    """One client's compact row (times relative to the round's start)."""
    return [
        int(client_id),
        round(launch_s, 3),
        round(download_s, 3),
        round(compute_s, 3),
        round(upload_s, 3),
        OUTCOME_CODES[outcome],
        round(end_s, 3),
    ]


def round_timeline(
    start_s: float,
    end_s: float,
    rows: Iterable[list[Any]],
    available: int | None = None,
    closed_by: int | None = None,
    selector: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A round's timeline entry (without its ``round_idx``, which the writer adds)."""
    entry: dict[str, Any] = {
        "v": TIMELINE_VERSION,
        "start_s": round(start_s, 3),
        "end_s": round(end_s, 3),
        "available": available,
        "closed_by": closed_by,
        "clients": list(rows),
    }
    if selector:
        entry["selector"] = dict(selector)
    return entry


def without_timeline(record: RoundRecord) -> RoundRecord:
    """``record`` with its timeline taken out of ``extra`` (itself when it has none)."""
    if TIMELINE_KEY not in record.extra:
        return record
    extra = {k: v for k, v in record.extra.items() if k != TIMELINE_KEY}
    return replace(record, extra=extra)


class TimelineWriter:
    """Appends each round's timeline to ``clients.jsonl`` (flushed; not fsynced).

    The timeline is diagnostic: losing the last line in a crash costs a picture,
    not a result, so the writer spares the run an fsync of kilobytes per round.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, record: RoundRecord) -> None:
        """Append ``record``'s timeline, if it carries one."""
        entry = _timeline_entry(record)
        if entry is not None:
            append_json_lines(self.path, [entry])

    def rewrite(self, records: Iterable[RoundRecord]) -> None:
        """Replace the file with exactly ``records``' timelines (a resumed run)."""
        lines = [dumps(e) + "\n" for e in map(_timeline_entry, records) if e is not None]
        if lines or self.path.exists():
            atomic_write_text(self.path, "".join(lines))


def _timeline_entry(record: RoundRecord) -> dict[str, Any] | None:
    entry = record.extra.get(TIMELINE_KEY)
    if not isinstance(entry, Mapping):
        return None
    return {"round_idx": record.round_idx, **entry}

"""A deployed round's client timeline, for the record (see :mod:`fedsys.metrics.timeline`).

The simulator plans each client's phases on the virtual clock; a real server measures
them on its own: the service stamps when a task's model download and update upload
began and ended (:meth:`~fedsys.deploy.round_state.LiveRound.stamp`), the round knows
when each update was counted and when each client dropped out. The rows are the
simulator's, so the dashboard draws both the same way: ``launch_s`` is when the model
download began, compute is the time between the download's end and the upload's
start, and an eighth value says when the server assigned the task. A phase still
running when the client dropped out, was refused, was turned away or the round was
recorded is cut there.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from fedsys.core.update import ClientId
from fedsys.deploy.round_state import LiveRound
from fedsys.metrics.timeline import client_row, round_timeline

CLOCK = "server"
"""The timeline's ``clock``: wall seconds measured by the server (a simulation has none)."""


def deploy_timeline(
    live: LiveRound,
    outcomes: Mapping[ClientId, str],
    end_s: float,
    selector: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The timeline entry of ``live``, recorded now, whose clients ended as ``outcomes`` say.

    Parameters
    ----------
    live
        The round, with its assignments, stamps, arrivals and dropouts.
    outcomes
        Each assigned client's outcome (completed, rejected, dropped, straggled).
    end_s
        The run's clock now (the round record's ``end_s``); the timeline's ``start_s``
        is the run's clock when the round's tasks began to go out.
    selector
        The selector's state after the round (:func:`fedsys.selection.describe`).
    """
    origin = live.started
    round_end = time.monotonic() - origin
    arrived = {a.client_id: a.at - origin for a in live.arrivals}
    rows = []
    for client in sorted(live.assignments):
        outcome = outcomes[client]
        marks = {k: v - origin for k, v in live.stamps.get(client, {}).items()}
        if outcome == "completed":
            end = arrived[client]
        elif outcome == "dropped":
            end = live.dropped[client]
        else:  # refused, turned away late, a late upload held, or still working
            end = marks.get("ended", marks.get("upload_end", round_end))
        assigned = live.assignments[client].assigned_at - origin
        rows.append(measured_row(client, assigned, marks, outcome, end))
    closed_by = None
    if live.target is not None and len(live.arrivals) >= live.target:
        closed_by = live.arrivals[live.target - 1].client_id
    entry = round_timeline(
        end_s - round_end,
        end_s,
        rows,
        available=live.available,
        closed_by=closed_by,
        selector=selector,
    )
    entry["clock"] = CLOCK
    return entry


def measured_row(
    client: ClientId, assigned: float, marks: Mapping[str, float], outcome: str, end: float
) -> list[Any]:
    """One client's row from the marks it reached, every phase cut at ``end``.

    A phase lasts from its mark to the next mark reached (``end`` when none was):
    the download from ``download_start``, compute from ``download_end``, the upload
    from ``upload_start``. The row starts at the first mark (the task's assignment
    when it reached none), so its phases stay contiguous as the simulator's are.
    """
    end = max(end, assigned)
    chain = [marks.get(name) for name in _CHAIN]
    times = [None if t is None else min(max(t, assigned), end) for t in chain]
    lengths = []
    for i in range(3):  # download, compute, upload
        begun = times[i]
        stop = next((t for t in times[i + 1 :] if t is not None), end)
        lengths.append(0.0 if begun is None else max(stop - begun, 0.0))
    launch = next((t for t in times if t is not None), assigned)
    row = client_row(client, launch, *lengths, outcome, end)
    row.append(round(assigned, 3))
    return row


_CHAIN = ("download_start", "download_end", "upload_start", "upload_end")
"""The marks that begin the download, compute and upload, and the upload's end."""


__all__ = ["CLOCK", "deploy_timeline", "measured_row"]

"""A simulated round's client timeline, for the record (see :mod:`fedsys.metrics.timeline`).

Every launched client's phases come straight from its :class:`Launch` (the virtual
clock planned them before anyone trained), its outcome from the report the selector
got, so the picture and the selector's feedback never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fedsys.core.update import ClientReport
from fedsys.metrics.timeline import client_row, round_timeline
from fedsys.selection.describe import describe_selector
from fedsys.sim.engine import Engine
from fedsys.sim.events import Launch


def sim_timeline(
    engine: Engine,
    round_idx: int,
    launches: Sequence[Launch],
    reports: Sequence[ClientReport],
    start_s: float,
    end_s: float,
    closed_at_s: float,
) -> dict[str, Any]:
    """The timeline entry of a round whose ``launches`` ended as ``reports`` say.

    ``closed_at_s`` is when the round stopped taking updates: the client whose
    arrival is exactly then closed it (none when a deadline or a dropout did).
    """
    rows = []
    closed_by = None
    for launch, report in zip(launches, reports, strict=True):
        if report.outcome == "dropped":
            end = max(launch.offline_s, launch.start_s)
        else:
            end = launch.finish_s
        if report.outcome in ("completed", "rejected") and launch.finish_s == closed_at_s:
            closed_by = launch.client_id
        rows.append(
            client_row(
                launch.client_id,
                launch.start_s - start_s,
                launch.download_s,
                launch.compute_s,
                launch.upload_s,
                report.outcome,
                end - start_s,
            )
        )
    selected = [launch.client_id for launch in launches]
    parts = engine.parts
    return round_timeline(
        start_s,
        end_s,
        rows,
        available=engine.last_population,
        closed_by=closed_by,
        selector=describe_selector(parts.selector, engine.selector_state, round_idx, selected),
    )

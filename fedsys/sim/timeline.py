"""Each launched client's timeline on the virtual clock: download, compute, upload, offline.

The engine asks for it when a round mode launches clients; a :class:`WorkPlan` (see
:mod:`fedsys.sim.work`) changes what each one computes and uploads, and the clock
charges exactly that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from fedsys.core.update import ClientId
from fedsys.sim.events import Launch
from fedsys.sim.work import WorkPlan
from fedsys.traces.timing import client_round_time

if TYPE_CHECKING:
    from fedsys.sim.engine import Engine


def plan_launches(
    engine: Engine, client_ids: Sequence[ClientId], version: int, work: WorkPlan | None = None
) -> list[Launch]:
    """Timelines of ``client_ids`` starting now (``work``: per-client steps and uploads).

    Raises
    ------
    ValueError
        If ``work`` does not cover exactly ``client_ids``, or asks for partial uploads
        together with secure aggregation.
    """
    ids = np.asarray(client_ids, dtype=np.int64)
    parts = engine.parts
    now = engine.clock.now_s
    bytes_down = engine.weights.num_bytes
    bytes_up = np.full(len(ids), engine.upload_bytes(), dtype=np.int64)
    samples = engine.samples_processed[ids]
    if work is not None:
        if not np.array_equal(work.client_ids, ids):
            raise ValueError("a work plan must cover exactly the launched clients, in order")
        samples = work.samples
        bytes_up = np.where(work.upload_fraction < 1.0, work.upload_bytes, bytes_up)
    secure = None
    if parts.secure_cost is not None:
        if work is not None and (work.upload_fraction < 1.0).any():
            raise ValueError("partial uploads cannot be combined with secure aggregation")
        secure = parts.secure_cost.round_cost(
            len(ids), engine.weights.num_params, engine.upload_bytes()
        )
        bytes_down += secure.extra_bytes_down
        bytes_up = bytes_up + secure.extra_bytes_up
    download_s, compute_s, upload_s = client_round_time(
        parts.fleet, ids, samples, bytes_down, bytes_up, parts.model_cost_ratio
    )
    if secure is not None:  # protocol compute; the unmasking trip and the server's work
        compute_s = compute_s + secure.client_compute_s
        latency_s = secure.round_trips * parts.secure_cost.round_trip_s  # type: ignore[union-attr]
        upload_s = upload_s + latency_s + secure.server_compute_s
    upload_s = upload_s + parts.client_task_s  # the task's messages end with its verdict
    offline_s = parts.fleet.online_until(ids, now)
    sizes = parts.dataset.client_sizes
    launches = []
    for i, client in enumerate(ids.tolist()):
        launches.append(
            Launch(
                client_id=client,
                version=version,
                start_s=now,
                download_s=float(download_s[i]),
                compute_s=float(compute_s[i]),
                upload_s=float(upload_s[i]),
                offline_s=float(offline_s[i]),
                num_samples=int(sizes[client]),
                bytes_down=bytes_down,
                bytes_up=int(bytes_up[i]),
                serial=engine.launches + i,
                samples_processed=int(samples[i]),
                population=engine.last_population,
                local_steps=None if work is None else int(work.steps[i]),
                upload_fraction=1.0 if work is None else float(work.upload_fraction[i]),
            )
        )
    return launches


__all__ = ["plan_launches"]

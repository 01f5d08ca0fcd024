"""Secure summation of the sites' partials: pairwise additive masking with dropouts.

Every site holds a long-term X25519 key; the coordinator gathers the public keys once.
Per query, each site masks its summable partials with seeds derived from its key, every
peer's public key and a fresh random query id (:mod:`fedsys.analytics.masking`), so the
masks cancel in the sum and the coordinator learns only totals. A site lost before its
share arrives is skipped (an optional silo task); the survivors then reveal only the
seeds they share with it, and its masks are removed from the total.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedsys.analytics import masking
from fedsys.analytics.encoding import to_json_value
from fedsys.analytics.planner import QueryPlan
from fedsys.silo.coordinator import JobResult
from fedsys.silo.job import Job, JobBuilder
from fedsys.silo.mode import JobFailedError

__all__ = ["MIN_SECURE_SITES", "JobRunner", "SecureSum", "fetch_public_keys", "job_bytes",
           "secure_sums"]

MIN_SECURE_SITES = 2
"""Fewest sites whose masked partials may be summed (one alone would reveal itself)."""

JobRunner = Callable[[Job], Awaitable[JobResult]]
"""Runs a job on the sites and returns its result (a coordinator, a mode, a deadline)."""


@dataclass(frozen=True)
class SecureSum:
    """A secure sum's total and what it cost.

    Attributes
    ----------
    total
        The decoded sum of the survivors' partial vectors.
    duration_s, bytes_moved
        Time and payload bytes of its jobs (the masked partials, and any recovery).
    dropped
        Sites whose share was lost (left out of the total; their masks removed).
    """

    total: np.ndarray
    duration_s: float
    bytes_moved: int
    dropped: list[str]


def job_bytes(result: JobResult) -> int:
    """Payload bytes the sites sent for a job."""
    return sum(len(o.payload) for o in result.outputs.values())


async def fetch_public_keys(run_job: JobRunner, dataset: str, sites: Sequence[str]
                            ) -> dict[str, bytes]:
    """Ask each of ``sites`` (holding ``dataset``) for its X25519 public key."""
    job = JobBuilder("keys")
    ids = [job.site_task(s, "analytics.public_key", {}, dataset=dataset, site=s)
           for s in sites]
    result = await run_job(job.build(ids))
    return {site: result.outputs[site].payload for site in sites}


async def secure_sums(run_job: JobRunner, dataset: str, plan: QueryPlan,
                      clamps: Mapping[int, tuple[float, float]], domains: list[list[Any]],
                      sites: list[str], keys: Mapping[str, bytes], max_dropouts: int,
                      privacy: Mapping[str, Any] | None = None) -> SecureSum:
    """The sites' summable partials of ``plan``, summed under pairwise masking.

    Parameters
    ----------
    run_job
        Runs a job on the sites.
    dataset
        The dataset the sites query.
    plan, clamps, domains
        The query, the clamps of its DP sums and the declared GROUP BY values.
    sites
        The sites that take part.
    keys
        Every site's X25519 public key (:func:`fetch_public_keys`).
    max_dropouts
        Sites the sum may lose and still answer.
    privacy
        The query's epsilon, delta and mechanism, for sites that noise their DP-only
        data themselves before masking.

    Raises
    ------
    ValueError
        If fewer than two sites take part.
    JobFailedError
        If more than ``max_dropouts`` sites drop or fewer than two survive.
    """
    if len(sites) < MIN_SECURE_SITES:
        raise ValueError(f"a secure sum needs at least {MIN_SECURE_SITES} sites (a sum over "
                         f"one site is that site's values); {len(sites)} connected")
    context = secrets.token_bytes(16)
    job = JobBuilder("query-secure")
    params = {"query": plan.sql, "clamps": {str(k): list(v) for k, v in clamps.items()},
              "domains": [[to_json_value(v) for v in d] for d in domains],
              "context": context.hex(), "peers": {s: keys[s].hex() for s in sites}}
    if privacy is not None:
        params["privacy"] = dict(privacy)
    for site in sites:
        job.site_task(site, "analytics.masked_partial", params, dataset=dataset,
                      site=site, optional=True)
    result = await run_job(job.build(sites))
    duration_s, moved = result.duration_s, job_bytes(result)
    survivors = [s for s in sites if "skipped" not in result.outputs[s].meta]
    dropped = [s for s in sites if s not in survivors]
    if len(dropped) > max_dropouts or len(survivors) < MIN_SECURE_SITES:
        raise JobFailedError(f"secure sum lost {len(dropped)} sites {dropped}: more than "
                             f"max_dropouts={max_dropouts} or fewer than "
                             f"{MIN_SECURE_SITES} survivors")
    total = np.frombuffer(result.outputs[survivors[0]].payload, dtype="<u8").astype(np.uint64)
    for site in survivors[1:]:
        total += np.frombuffer(result.outputs[site].payload, dtype="<u8").astype(np.uint64)
    if dropped:
        recovery, extra = await _recover(run_job, dataset, context, survivors, dropped, keys)
        total = masking.remove_dropped_masks(total, recovery)
        duration_s += extra.duration_s
        moved += job_bytes(extra)
    return SecureSum(masking.decode_fixed(total), duration_s, moved, dropped)


async def _recover(run_job: JobRunner, dataset: str, context: bytes,
                   survivors: Sequence[str], dropped: Sequence[str], keys: Mapping[str, bytes]
                   ) -> tuple[dict[tuple[str, str], bytes], JobResult]:
    """Ask every survivor for the seeds it shares with the dropped sites."""
    job = JobBuilder("query-recover")
    params = {"context": context.hex(), "dropped": {s: keys[s].hex() for s in dropped}}
    for site in survivors:
        job.site_task(site, "analytics.reveal_seeds", params, dataset=dataset, site=site)
    result = await run_job(job.build(list(survivors)))
    revealed: dict[tuple[str, str], bytes] = {}
    for site in survivors:
        payload = result.outputs[site].payload
        for i, gone in enumerate(sorted(dropped)):
            revealed[(site, gone)] = payload[32 * i:32 * (i + 1)]
    return revealed, result

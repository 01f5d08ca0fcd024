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
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from fedsys.analytics import masking
from fedsys.analytics.encoding import to_json_value
from fedsys.analytics.planner import QueryPlan
from fedsys.silo.coordinator import JobResult
from fedsys.silo.job import JobBuilder
from fedsys.silo.mode import JobFailedError

if TYPE_CHECKING:
    from fedsys.analytics.query import FederatedQueryEngine

__all__ = ["MIN_SECURE_SITES", "public_keys", "secure_sums"]

MIN_SECURE_SITES = 2
"""Fewest sites whose masked partials may be summed (one alone would reveal itself)."""


def job_bytes(result: JobResult) -> int:
    """Payload bytes the sites sent for a job."""
    return sum(len(o.payload) for o in result.outputs.values())


async def public_keys(engine: FederatedQueryEngine, sites: Sequence[str]) -> dict[str, bytes]:
    """The sites' X25519 public keys (asked once per site, then kept by the engine)."""
    missing = [s for s in sites if s not in engine.keys_]
    if missing:
        job = JobBuilder("keys")
        ids = [job.site_task(s, "analytics.public_key", {}, dataset=engine.dataset, site=s)
               for s in missing]
        result = await engine.coordinator.run_job(job.build(ids), engine.mode,
                                                engine.job_timeout_s)
        for site in missing:
            engine.keys_[site] = result.outputs[site].payload
    return {s: engine.keys_[s] for s in sites}

async def secure_sums(engine: FederatedQueryEngine, plan: QueryPlan,
                  clamps: Mapping[int, tuple[float, float]], domains: list[list[Any]],
                  sites: list[str]) -> tuple[np.ndarray, float, int, list[str]]:
    """The sites' summable partials of ``plan``, summed under pairwise masking.

    Returns the decoded total vector, the time and bytes of the jobs, and the sites
    that dropped out (their shares are left out; their masks are removed).

    Raises
    ------
    JobFailedError
        If more sites drop than ``engine.max_dropouts`` or fewer than two survive.
    """
    if len(sites) < MIN_SECURE_SITES:
        raise ValueError(f"a secure sum needs at least {MIN_SECURE_SITES} sites (a sum over "
                         f"one site is that site's values); {len(sites)} connected")
    keys = await public_keys(engine, sites)
    context = secrets.token_bytes(16)
    job = JobBuilder("query-secure")
    params = {"query": plan.sql, "clamps": {str(k): list(v) for k, v in clamps.items()},
              "domains": [[to_json_value(v) for v in d] for d in domains],
              "context": context.hex(), "peers": {s: k.hex() for s, k in keys.items()}}
    for site in sites:
        job.site_task(site, "analytics.masked_partial", params, dataset=engine.dataset,
                      site=site, optional=True)
    result = await engine.coordinator.run_job(job.build(sites), engine.mode, engine.job_timeout_s)
    duration_s, moved = result.duration_s, job_bytes(result)
    survivors = [s for s in sites if "skipped" not in result.outputs[s].meta]
    dropped = [s for s in sites if s not in survivors]
    if len(dropped) > engine.max_dropouts or len(survivors) < MIN_SECURE_SITES:
        raise JobFailedError(f"secure sum lost {len(dropped)} sites {dropped}: more than "
                             f"max_dropouts={engine.max_dropouts} or fewer than "
                             f"{MIN_SECURE_SITES} survivors")
    total = np.frombuffer(result.outputs[survivors[0]].payload, dtype="<u8").astype(np.uint64)
    for site in survivors[1:]:
        total += np.frombuffer(result.outputs[site].payload, dtype="<u8").astype(np.uint64)
    if dropped:
        recovery, extra = await _recover(engine, context, survivors, dropped, keys)
        total = masking.remove_dropped_masks(total, recovery)
        duration_s += extra.duration_s
        moved += job_bytes(extra)
    return masking.decode_fixed(total), duration_s, moved, dropped

async def _recover(engine: FederatedQueryEngine, context: bytes, survivors: Sequence[str],
               dropped: Sequence[str], keys: Mapping[str, bytes]
               ) -> tuple[dict[tuple[str, str], bytes], JobResult]:
    """Ask every survivor for the seeds it shares with the dropped sites."""
    job = JobBuilder("query-recover")
    params = {"context": context.hex(), "dropped": {s: keys[s].hex() for s in dropped}}
    for site in survivors:
        job.site_task(site, "analytics.reveal_seeds", params, dataset=engine.dataset,
                      site=site)
    result = await engine.coordinator.run_job(job.build(list(survivors)), engine.mode,
                                            engine.job_timeout_s)
    revealed: dict[tuple[str, str], bytes] = {}
    for site in survivors:
        payload = result.outputs[site].payload
        for i, gone in enumerate(sorted(dropped)):
            revealed[(site, gone)] = payload[32 * i:32 * (i + 1)]
    return revealed, result

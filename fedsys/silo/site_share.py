"""Fair share of a site's workers between the jobs it holds at once.

A site may hold several jobs (several analysts' queries, a training round): when a
worker is free, the next task comes from the job whose analyst holds the fewest
workers now, then the job of that analyst holding the fewest, then the one that waited
longest. So two analysts split the site's workers evenly however many jobs each sent,
and a short query sent while a training round holds every worker takes the first
worker that frees instead of waiting for the round to end.
"""

from __future__ import annotations

from collections.abc import Iterable

from fedsys.silo.site_job import SiteJob

__all__ = ["next_job"]


def next_job(jobs: Iterable[SiteJob], free: int) -> SiteJob | None:
    """The job whose runnable task takes the next worker; ``None`` if none may start.

    ``free`` is the number of free workers. At ``0`` only an early-binding job may
    still start a task (one queued in the pool beyond its workers, so a worker that
    finishes takes it at once); a late-binding one waits for a free worker.
    """
    live = [job for job in jobs if not job.ended]
    by_analyst: dict[str, int] = {}
    for job in live:
        by_analyst[job.analyst] = by_analyst.get(job.analyst, 0) + job.running
    candidates = [job for job in live
                  if (free > 0 or (free == 0 and not job.late_binding))
                  and job.runnable(take=False) is not None]
    if not candidates:
        return None
    return min(candidates, key=lambda j: (by_analyst[j.analyst], j.running, j.served))

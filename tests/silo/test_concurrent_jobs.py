"""Several jobs at once on one coordinator and the same site processes.

Each site holds the jobs side by side (keyed by job id) and gives each free worker to
the job whose analyst holds the fewest; a job that ends (here: cancelled) is dropped at
every site at once. Real site processes on loopback, two workers each.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fedsys.silo.job import JobBuilder
from fedsys.silo.local_federation import LocalCluster
from fedsys.silo.mode import EngineMode
from fedsys.silo.shaper import LinkSettings
from fedsys.silo.task_registry import Output
from tests.silo.conftest import LoopThread, _start


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Iterator[tuple[LocalCluster, LoopThread]]:
    """Two sites (two workers each, datasets ``d0`` and ``d1``) behind a 20 ms RTT."""
    yield from _start(Path(tmp_path_factory.mktemp("silo-concurrent")), sites=2, workers=2,
                      comm_workers=1, link=LinkSettings.symmetric(0.02), data_rows=1000,
                      data_samples=32, data_features=4, insecure=True)


def _spin_job(name: str, per_site: int, ms: float, value: int) -> Any:
    """``per_site`` tasks of ``ms`` on each site, each worth ``value``; result: the sum."""
    job = JobBuilder(name)
    ids = [job.site_task(f"{name}/{d}/{i}", "silo.spin", {"ms": ms, "value": value},
                         dataset=d)
           for d in ("d0", "d1") for i in range(per_site)]
    job.merge("total", lambda outs: Output(b"", {"value": sum(o.meta["value"] for o in outs)}),
              ids)
    return job.build(results=["total"])


def _overlap(a: list[Any], b: list[Any]) -> bool:
    """Whether a task of ``a`` and one of ``b`` computed at the same site at the same time."""
    return any(x.site == y.site and x.start_s < y.end_s and y.start_s < x.end_s
               for x in a for y in b)


def test_a_short_job_runs_beside_a_long_one_and_ends_first(pair):
    cluster, runner = pair
    coordinator = cluster.coordinator
    assert coordinator is not None
    # 12 tasks of 300 ms per site on 2 workers: the long job holds every worker ~1.8 s.
    long_job = _spin_job("long", per_site=12, ms=300, value=2)
    short_job = _spin_job("short", per_site=2, ms=50, value=3)

    async def both() -> tuple[Any, Any, float, float]:
        started = time.monotonic()
        long_run = asyncio.ensure_future(coordinator.run_job(long_job, EngineMode.sol(),
                                                             60, analyst="alice"))
        await asyncio.sleep(0.4)  # the long job's tasks are queued at both sites
        short = await coordinator.run_job(short_job, EngineMode.sol(), 60, analyst="bob")
        short_done = time.monotonic() - started
        long = await long_run
        return long, short, short_done, time.monotonic() - started

    long, short, short_done, long_done = runner.run(both(), timeout_s=120)

    assert long.outputs["total"].meta["value"] == 2 * 24  # exact, each task counted once
    assert short.outputs["total"].meta["value"] == 3 * 4
    assert short_done < long_done - 0.5  # it did not wait for the long job to end
    assert _overlap(long.records, short.records)  # side by side at a site
    assert not coordinator.busy


def _ends(cluster: LocalCluster, prefix: str) -> dict[str, dict[str, Any]]:
    """Per site, what it logged when job ``prefix-*`` ended there."""
    ends: dict[str, dict[str, Any]] = {}
    for name in cluster.names:
        for line in (cluster.workdir / "logs" / f"{name}.log").read_text().splitlines():
            entry = json.loads(line) if line.startswith("{") else {}
            if (entry.get("msg") == "job ended"
                    and str(entry.get("job_id", "")).startswith(f"{prefix}-")):
                ends[name] = entry
    return ends


def test_a_cancelled_job_is_dropped_at_the_sites_and_the_other_finishes_exactly(pair):
    cluster, runner = pair
    coordinator = cluster.coordinator
    assert coordinator is not None
    doomed = _spin_job("doomed", per_site=40, ms=200, value=5)  # ~4 s of queued work a site
    kept = _spin_job("kept", per_site=8, ms=100, value=7)

    async def scenario() -> Any:
        doomed_run = asyncio.ensure_future(coordinator.run_job(doomed, EngineMode.sol(), 60,
                                                               analyst="alice"))
        kept_run = asyncio.ensure_future(coordinator.run_job(kept, EngineMode.sol(), 60,
                                                             analyst="bob"))
        while not any(r.task_id.startswith("doomed") for r in coordinator.job_records()):
            await asyncio.sleep(0.02)
        doomed_run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed_run
        return await kept_run

    kept_result = runner.run(scenario(), timeout_s=120)

    assert kept_result.outputs["total"].meta["value"] == 7 * 16  # exact despite the cancel
    assert coordinator.running_jobs() == []
    deadline = time.monotonic() + 10
    while len(ends := _ends(cluster, "doomed")) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    # Every site heard of the cancel and dropped the job's queued tasks at once (the
    # coordinator keeps a few bound ahead per site: Sol's early binding).
    assert set(ends) == set(cluster.names)
    assert all(end["reason"] == "cancelled" for end in ends.values())
    assert sum(end["dropped_tasks"] for end in ends.values()) >= 1, ends


def test_late_and_early_binding_jobs_share_the_sites_and_both_are_exact(pair):
    cluster, runner = pair
    coordinator = cluster.coordinator
    assert coordinator is not None
    # 6 tasks of 300 ms per site on 2 workers: each job needs ~0.9 s of a site, long
    # enough that a loaded machine's slower start of one job still meets the other.
    late = _spin_job("late", per_site=6, ms=300, value=11)
    early = _spin_job("early", per_site=6, ms=300, value=13)
    late_again = _spin_job("again", per_site=3, ms=50, value=17)

    async def together() -> list[Any]:
        return await asyncio.gather(
            coordinator.run_job(late, EngineMode.baseline(), 60, analyst="alice"),
            coordinator.run_job(early, EngineMode.sol(), 60, analyst="bob"),
            coordinator.run_job(late_again, EngineMode.baseline(), 60, analyst="bob"))

    results = runner.run(together(), timeout_s=120)

    assert [r.outputs["total"].meta["value"] for r in results] == [11 * 12, 13 * 12, 17 * 6]
    assert _overlap(results[0].records, results[1].records)
    assert not coordinator.busy

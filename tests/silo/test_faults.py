"""A site manager killed mid-job: its tasks re-run where their data is, or the job fails.

The fault cluster has three sites; site-1 holds a replica of site-0's dataset ``d0``.
"""

from __future__ import annotations

import time

import pytest

from fedsys.silo.job import JobBuilder
from fedsys.silo.mode import EngineMode, JobFailedError
from fedsys.silo.task_registry import Output


def _spin_job(per_dataset, **params):
    job = JobBuilder("spin")
    params = {"ms": 150, "value": 1, **params}
    ids = [job.site_task(f"spin/{d}/{i}", "silo.spin", params, dataset=d)
           for d, n in per_dataset.items() for i in range(n)]
    job.merge("total", lambda outs: Output(b"", {"value": sum(o.meta["value"] for o in outs)}),
              ids)
    return job.build(results=["total"])


def _kill_after_first_output(c, runner, future, site_index, timeout_s=60.0):
    """Kill site ``site_index`` once it has delivered one output of the running job."""
    name = c.names[site_index]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not future.done():
        if any(r.site == name for r in c.coordinator.job_records()):
            c.kill_site(site_index)
            return
        time.sleep(0.02)
    raise AssertionError(f"{name} delivered no output within {timeout_s} s")


def test_a_slow_site_does_not_hoard_work(fault_cluster):
    # d0 is at site-0 and site-1; site-1 computes 10x slower. The pipelining degree follows
    # each site's measured task time, so the slow site holds little and runs little.
    c, runner = fault_cluster
    job = _spin_job({"d0": 24}, ms=20, slow_sites=["site-1"])
    result = runner.run(c.coordinator.run_job(job, EngineMode.sol()))
    assert result.outputs["total"].meta["value"] == 24
    ran = [r.site for r in result.records]
    assert ran.count("site-0") >= 18 and len(ran) == 24
    assert result.stats["duplicates"] == 0


def test_killed_site_has_its_tasks_rerun_elsewhere_and_nothing_counted_twice(fault_cluster):
    c, runner = fault_cluster
    job = _spin_job({"d0": 12, "d1": 4})
    future = runner.submit(c.coordinator.run_job(job, EngineMode.sol(on_site_failure="rerun")))
    _kill_after_first_output(c, runner, future, 0)
    result = future.result(timeout=120)
    assert result.outputs["total"].meta["value"] == 16  # every task exactly once
    ids = [r.task_id for r in result.records]
    assert len(ids) == len(set(ids)) == 16
    assert result.stats["lost_sites"] == 1 and result.stats["reruns"] >= 1
    by_site = {r.task_id: r.site for r in result.records}
    assert any(site == "site-0" for site in by_site.values())  # it did some work first
    assert sum(1 for t, s in by_site.items() if t.startswith("spin/d0") and s == "site-1") >= 1


def test_killed_site_fails_the_job_naming_it_when_configured(fault_cluster):
    c, runner = fault_cluster
    job = _spin_job({"d2": 12})
    future = runner.submit(c.coordinator.run_job(job, EngineMode.sol(on_site_failure="fail")))
    _kill_after_first_output(c, runner, future, 2)
    with pytest.raises(JobFailedError, match=r"site 'site-2' was lost .*on_site_failure=fail"):
        future.result(timeout=60)


def test_a_task_without_any_live_site_fails_the_job_at_once(fault_cluster):
    c, runner = fault_cluster
    with pytest.raises(JobFailedError, match="needs dataset 'nowhere'"):
        runner.run(c.coordinator.run_job(_spin_job({"nowhere": 1}), EngineMode.sol()))


def test_a_task_that_raises_fails_the_job_naming_task_and_site(fault_cluster):
    c, runner = fault_cluster
    job = JobBuilder("bad")
    job.site_task("bad-part", "silo.histogram", {"part": 5, "parts": 2, "lo": 0, "hi": 1},
                  dataset="d1")
    job.merge("total", lambda outs: outs[0], ["bad-part"])
    with pytest.raises(JobFailedError,
                       match=r"task 'bad-part' failed on site 'site-1': .*part 5 is outside"):
        runner.run(c.coordinator.run_job(job.build(results=["total"]), EngineMode.sol()))

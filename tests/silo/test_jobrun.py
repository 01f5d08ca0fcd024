"""A job run's events on plain values: failures, skipped optional tasks, unrunnable tasks."""

import pytest

from fedsys.silo.job import JobBuilder
from fedsys.silo.jobrun import JobRun
from fedsys.silo.mode import EngineMode, JobFailedError
from fedsys.silo.task_registry import Output
from tests.silo.plain_runs import record, sites_of, spin_job


def test_a_task_failure_fails_the_job_unless_the_task_was_rerun_elsewhere_meanwhile():
    sites = sites_of(("a", 1, ("d0",)), ("b", 1, ("d0", "d1")))
    run = JobRun(spin_job(3), EngineMode.sol(max_degree=2), sites)
    run.start()
    on_a = sorted(t for t, s in run.bound_to.items() if s == "a")
    on_b = sorted(t for t, s in run.bound_to.items() if s == "b")
    with pytest.raises(JobFailedError, match=rf"task '{on_b[0]}' failed on site 'b': boom"):
        run.on_task_failed("b", on_b[0], "boom")
    # Site a is lost, its tasks are re-bound; its late report of one of them is stale.
    sites["a"].alive = False
    run.on_site_lost("a")
    assert run.on_task_failed("a", on_a[0], "output upload failed: UNAVAILABLE") == []
    done = on_b[0]
    run.on_output("b", done, Output(b"", {"value": 1}), record(done, "b"))
    assert run.on_task_failed("b", done, "late") == []  # already counted
    assert run.stats["stale_failures"] == 2


def test_job_refuses_a_task_no_site_can_run():
    sites = sites_of(("a", 1, ("d0",)))
    run = JobRun(spin_job(1, datasets=("d9",)), EngineMode.sol(), sites)
    with pytest.raises(JobFailedError, match="needs dataset 'd9'"):
        run.start()


def test_optional_task_of_a_lost_site_is_skipped_and_the_job_goes_on():
    sites = sites_of(("a", 1, ("d0",)), ("b", 1, ("d1",)))
    job = JobBuilder("opt")
    job.site_task("ta", "silo.spin", {}, dataset="d0", site="a", optional=True)
    job.site_task("tb", "silo.spin", {}, dataset="d1", site="b", optional=True)
    run = JobRun(job.build(results=["ta", "tb"]), EngineMode.sol(), sites)
    run.start()
    run.on_output("a", "ta", Output(b"x", {}), record("ta", "a"))
    sites["b"].alive = False
    run.on_site_lost("b")
    assert run.complete
    assert run.outputs["tb"].meta["skipped"].startswith("site 'b' was lost")
    assert run.outputs["ta"].payload == b"x"
    assert run.stats["skipped"] == 1


def test_required_task_of_a_lost_site_still_fails_the_job():
    sites = sites_of(("a", 1, ("d0",)), ("b", 1, ("d1",)))
    job = JobBuilder("req")
    job.site_task("ta", "silo.spin", {}, dataset="d0", site="a")
    job.site_task("tb", "silo.spin", {}, dataset="d1", site="b")
    run = JobRun(job.build(results=["ta", "tb"]), EngineMode.sol(), sites)
    run.start()
    sites["b"].alive = False
    with pytest.raises(JobFailedError, match="no connected site can run task 'tb'"):
        run.on_site_lost("b")

"""Binding policy on plain values: degree, early and late binding, reclaim, lost sites."""

import numpy as np
import pytest

from fedsys.silo.binding import SiteView
from fedsys.silo.histogram_job import histogram_job
from fedsys.silo.jobrun import JobRun, Push, Reclaim
from fedsys.silo.mode import EngineMode, JobFailedError
from fedsys.silo.task_registry import Output
from tests.silo.plain_runs import TASKS, binds, record, sites_of, spin_job


def test_degree_covers_one_rtt_of_work_and_is_capped():
    site = SiteView("a", workers=2, datasets=(), tasks=TASKS)
    assert site.degree(32) == 2  # nothing measured yet: one extra task per worker
    site.observe_rtt(0.1)
    site.observe_task(0.01)
    assert site.degree(32) == 20  # 2 workers x ceil(100 ms / 10 ms)
    assert site.degree(8) == 8
    site.observe_task(0.5)  # slow tasks: one queued task per worker covers the RTT
    assert site.degree(32) == 2


def test_degree_follows_the_jobs_own_tasks_not_a_previous_jobs_longer_ones():
    site = SiteView("s", 1, (), TASKS, rtt_s=0.1)
    for _ in range(5):
        site.observe_task(0.2, "silo.train")  # a previous job's long tasks
    assert site.degree(32, ["silo.histogram"]) == 1  # nothing known of it: any task's time
    site.observe_task(0.01, "silo.histogram")
    assert site.degree(32, ["silo.histogram"]) == 10  # ceil(100 ms / 10 ms)
    assert site.degree(32, ["silo.train"]) == 1
    assert site.degree(32, ["silo.train", "silo.histogram"]) == 10  # the shorter rules


def test_early_binding_queues_up_to_the_degree_without_requests():
    sites = sites_of(("a", 2, ("d0",)), ("b", 2, ("d1",)))
    for view in sites.values():
        view.observe_rtt(0.1)
        view.observe_task(0.02)
    run = JobRun(spin_job(20), EngineMode.sol(max_degree=6), sites)
    actions = run.start()
    assert len(binds(actions, "a")) == 2 + 6  # workers + capped degree (2 x 5 = 10 > 6)
    assert len(binds(actions, "b")) == 8
    assert all(b.spec.dataset == "d0" for b in binds(actions, "a"))
    # One output frees one slot: exactly one more task is bound, with no request.
    first = binds(actions, "a")[0].spec.task_id
    more = run.on_output("a", first, Output(b"", {"value": 1}), record(first, "a"))
    assert len(binds(more, "a")) == 1
    assert run.stats["requests"] == 0


def test_late_binding_binds_one_task_per_request():
    sites = sites_of(("a", 2, ("d0",)), ("b", 2, ("d1",)))
    run = JobRun(spin_job(5), EngineMode.baseline(), sites)
    assert binds(run.start()) == []
    actions = run.on_request("a", 2)
    assert len(binds(actions, "a")) == 2
    assert not any(isinstance(a, Push) for a in actions)
    assert all(not b.inputs_pushed for b in binds(actions))


def test_downstream_task_is_bound_early_and_gets_inputs_pushed():
    sites = sites_of(("a", 1, ("d0",)), ("b", 1, ("d1",)))
    job = histogram_job(["d0", "d1"], parts_per_dataset=1, lo=0, hi=1, merge_site="b")
    run = JobRun(job, EngineMode.sol(max_degree=4), sites)
    actions = run.start()
    bound = {b.spec.task_id: b.site for b in binds(actions)}
    assert bound == {"part/d0/0": "a", "part/d1/0": "b", "total": "b"}
    counts = Output(np.ones(32, dtype="<i8").tobytes(), {"rows": 3, "sum": 1.0})
    pushes = run.on_output("a", "part/d0/0", counts, record("part/d0/0", "a"))
    assert Push("b", "part/d0/0") in pushes


def test_a_site_that_falls_behind_has_queued_tasks_reclaimed():
    sites = sites_of(("slow", 1, ("d0",)), ("fast", 1, ("d0",)))
    for view in sites.values():
        view.observe_rtt(0.05)
        view.observe_task(0.01)
    run = JobRun(spin_job(12, datasets=("d0",)), EngineMode.sol(max_degree=5), sites)
    run.start()
    assert not run.unbound  # 1 worker + 5 queued at each site
    for _ in range(3):  # the slow site's tasks turn out slow
        sites["slow"].observe_task(0.5)
    actions = []
    for task_id in [t for t, s in run.bound_to.items() if s == "fast"]:
        actions += run.on_output("fast", task_id, Output(b"", {"value": 1}),
                                 record(task_id, "fast"))
    reclaims = [a for a in actions if isinstance(a, Reclaim)]
    assert len(reclaims) == 1 and reclaims[0].site == "slow"
    given = reclaims[0].task_ids
    assert len(given) == 2  # half the slow site's queue
    rebinds = run.on_reclaimed("slow", given)
    assert {b.spec.task_id for b in binds(rebinds, "fast")} == set(given)
    assert all(b.attempt == 1 for b in binds(rebinds))
    # A reclaimed task that the slow site had started anyway is not counted twice.
    out = Output(b"", {"value": 1})
    run.on_output("fast", given[0], out, record(given[0], "fast"))
    run.on_output("slow", given[0], out, record(given[0], "slow"))
    assert run.stats["duplicates"] == 1


def test_lost_site_tasks_rerun_where_their_data_is_or_the_job_fails_naming_it():
    sites = sites_of(("a", 1, ("d0",)), ("b", 1, ("d0", "d1")))
    run = JobRun(spin_job(3), EngineMode.sol(max_degree=2), sites)
    run.start()
    lost = [t for t, s in run.bound_to.items() if s == "a"]
    sites["a"].alive = False
    run.on_site_lost("a")
    assert set(lost) <= run.unbound  # site b is full: they wait for a free slot
    done = next(t for t, s in run.bound_to.items() if s == "b")
    actions = run.on_output("b", done, Output(b"", {"value": 1}), record(done, "b"))
    (rebound,) = binds(actions, "b")
    assert rebound.spec.task_id == min(lost) and rebound.attempt == 1

    sites = sites_of(("a", 1, ("d0",)), ("b", 1, ("d1",)))
    run = JobRun(spin_job(3), EngineMode.sol(on_site_failure="rerun"), sites)
    run.start()
    sites["a"].alive = False
    with pytest.raises(JobFailedError, match="site 'a' was lost and no connected site"):
        run.on_site_lost("a")

    sites = sites_of(("a", 1, ("d0",)), ("b", 1, ("d0", "d1")))
    run = JobRun(spin_job(3), EngineMode.sol(on_site_failure="fail"), sites)
    run.start()
    sites["a"].alive = False
    with pytest.raises(JobFailedError, match=r"site .a. was lost .*\(on_site_failure=fail\)"):
        run.on_site_lost("a")

"""Dataflow on plain values: outputs counted once, pushes, release, merges as actions."""

from fedsys.silo.job import JobBuilder
from fedsys.silo.jobrun import Evict, JobRun, Push, RunMerge, settle
from fedsys.silo.mode import EngineMode
from fedsys.silo.task_registry import Output
from tests.silo.plain_runs import record, sites_of, spin_job


def test_output_counted_once_and_unassigned_output_ignored():
    sites = sites_of(("a", 1, ("d0",)), ("b", 1, ("d0", "d1")))
    run = JobRun(spin_job(2), EngineMode.sol(max_degree=4), sites)
    run.start()
    task_id = next(t for t, s in run.bound_to.items() if s == "a")
    out = Output(b"", {"value": 1})
    settle(run, run.on_output("a", task_id, out, record(task_id, "a")))
    settle(run, run.on_output("a", task_id, out, record(task_id, "a")))
    assert run.stats["duplicates"] == 1
    other = next(t for t, s in run.bound_to.items() if s == "b" and t.startswith("t/d1"))
    settle(run, run.on_output("a", other, out, record(other, "a")))
    assert run.stats["unassigned"] == 1
    assert other not in run.done


def test_a_pushed_input_is_evicted_once_no_task_needs_it():
    sites = sites_of(("a", 1, ("d0",)))
    job = JobBuilder("evict")
    job.constant("w", Output(b"abc", {}))
    first = job.site_task("t1", "silo.spin", {}, ["w"], dataset="d0")
    second = job.site_task("t2", "silo.spin", {}, ["w", first], dataset="d0")
    job.merge("total", lambda outs: outs[0], [second])
    run = JobRun(job.build(results=["total"]), EngineMode.sol(max_degree=1), sites)
    actions = run.start()
    assert [a for a in actions if isinstance(a, Push)] == [Push("a", "w")]
    after_first = settle(run, run.on_output("a", "t1", Output(b"1", {}), record("t1", "a")))
    assert not [a for a in after_first if isinstance(a, Evict)]  # t2 still needs "w"
    after_second = settle(run, run.on_output("a", "t2", Output(b"2", {}), record("t2", "a")))
    assert Evict("a", "w") in after_second and Evict("a", "t1") in after_second
    assert "w" not in run.outputs and run.complete


def test_a_ready_merge_is_an_action_and_its_output_is_stored_only_when_handed_back():
    sites = sites_of(("a", 1, ("d0",)), ("b", 1, ("d1",)))
    job = JobBuilder("merge")
    t0 = job.site_task("t0", "silo.spin", {}, dataset="d0")
    t1 = job.site_task("t1", "silo.spin", {}, dataset="d1")
    job.merge("sum", lambda outs: Output(b"".join(o.payload for o in outs), {}), [t0, t1])
    job.site_task("next", "silo.spin", {}, ["sum"], dataset="d0")
    run = JobRun(job.build(results=["next"]), EngineMode.sol(max_degree=2), sites)
    run.start()
    run.on_output("a", "t0", Output(b"x", {}), record("t0", "a"))
    actions = run.on_output("b", "t1", Output(b"y", {}), record("t1", "b"))
    (merge,) = [a for a in actions if isinstance(a, RunMerge)]
    assert merge.key == "sum" and not merge.sealed
    assert "sum" not in run.done  # the run's state waits for the output
    assert not [a for a in run.on_request("a", 1) if isinstance(a, RunMerge)]  # not twice
    output = merge.compute()
    assert output.payload == b"xy"
    after = run.on_merged("sum", output)
    assert run.outputs["sum"] == output
    assert Push("a", "sum") in after  # "next" was bound early at a: the output goes there
    assert Evict("a", "t0") not in after  # t0 was never pushed to a site
    assert run.on_merged("sum", output) == []  # handed back twice: ignored

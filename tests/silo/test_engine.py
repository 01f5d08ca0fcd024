"""The binding logic on plain values: degree, early and late binding, reclaim, failures."""

import numpy as np
import pytest

from fedsys.silo.engine import (
    Bind,
    EngineMode,
    Evict,
    JobFailedError,
    JobRun,
    Push,
    PushPart,
    Reclaim,
    Seal,
    SiteView,
    TaskRecord,
)
from fedsys.silo.histogram_job import histogram_job, sum_count_outputs
from fedsys.silo.job import JobBuilder
from fedsys.silo.task_registry import Output

TASKS = frozenset({"silo.spin", "silo.histogram", "silo.sum_counts"})


def _sites(*specs: tuple[str, int, tuple[str, ...]]) -> dict[str, SiteView]:
    return {name: SiteView(name, workers, datasets, TASKS) for name, workers, datasets in specs}


def _record(task_id: str, site: str, compute_s: float = 0.01) -> TaskRecord:
    return TaskRecord(task_id, site, 0, 0.0, compute_s, 0.0, 8)


def _binds(actions, site=None):
    return [a for a in actions if isinstance(a, Bind) and (site is None or a.site == site)]


def _spin_job(n_per_dataset: int, datasets=("d0", "d1")):
    job = JobBuilder("spin")
    ids = [job.site_task(f"t/{d}/{i}", "silo.spin", {"value": 1}, dataset=d)
           for d in datasets for i in range(n_per_dataset)]
    job.merge("total", lambda outs: Output(b"", {"value": sum(o.meta["value"] for o in outs)}),
              ids)
    return job.build(results=["total"])


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
    sites = _sites(("a", 2, ("d0",)), ("b", 2, ("d1",)))
    for view in sites.values():
        view.observe_rtt(0.1)
        view.observe_task(0.02)
    run = JobRun(_spin_job(20), EngineMode.sol(max_degree=6), sites)
    actions = run.start()
    assert len(_binds(actions, "a")) == 2 + 6  # workers + capped degree (2 x 5 = 10 > 6)
    assert len(_binds(actions, "b")) == 8
    assert all(b.spec.dataset == "d0" for b in _binds(actions, "a"))
    # One output frees one slot: exactly one more task is bound, with no request.
    first = _binds(actions, "a")[0].spec.task_id
    more = run.on_output("a", first, Output(b"", {"value": 1}), _record(first, "a"))
    assert len(_binds(more, "a")) == 1
    assert run.stats["requests"] == 0


def test_late_binding_binds_one_task_per_request():
    sites = _sites(("a", 2, ("d0",)), ("b", 2, ("d1",)))
    run = JobRun(_spin_job(5), EngineMode.baseline(), sites)
    assert _binds(run.start()) == []
    actions = run.on_request("a", 2)
    assert len(_binds(actions, "a")) == 2
    assert not any(isinstance(a, Push) for a in actions)
    assert all(not b.inputs_pushed for b in _binds(actions))


def test_downstream_task_is_bound_early_and_gets_inputs_pushed():
    sites = _sites(("a", 1, ("d0",)), ("b", 1, ("d1",)))
    job = histogram_job(["d0", "d1"], parts_per_dataset=1, lo=0, hi=1, merge_site="b")
    run = JobRun(job, EngineMode.sol(max_degree=4), sites)
    actions = run.start()
    bound = {b.spec.task_id: b.site for b in _binds(actions)}
    assert bound == {"part/d0/0": "a", "part/d1/0": "b", "total": "b"}
    counts = Output(np.ones(32, dtype="<i8").tobytes(), {"rows": 3, "sum": 1.0})
    pushes = run.on_output("a", "part/d0/0", counts, _record("part/d0/0", "a"))
    assert Push("b", "part/d0/0") in pushes


def test_output_counted_once_and_unassigned_output_ignored():
    sites = _sites(("a", 1, ("d0",)), ("b", 1, ("d0", "d1")))
    run = JobRun(_spin_job(2), EngineMode.sol(max_degree=4), sites)
    run.start()
    task_id = next(t for t, s in run.bound_to.items() if s == "a")
    out = Output(b"", {"value": 1})
    run.on_output("a", task_id, out, _record(task_id, "a"))
    run.on_output("a", task_id, out, _record(task_id, "a"))
    assert run.stats["duplicates"] == 1
    other = next(t for t, s in run.bound_to.items() if s == "b" and t.startswith("t/d1"))
    run.on_output("a", other, out, _record(other, "a"))
    assert run.stats["unassigned"] == 1
    assert other not in run.done


def test_lost_site_tasks_rerun_where_their_data_is_or_the_job_fails_naming_it():
    sites = _sites(("a", 1, ("d0",)), ("b", 1, ("d0", "d1")))
    run = JobRun(_spin_job(3), EngineMode.sol(max_degree=2), sites)
    run.start()
    lost = [t for t, s in run.bound_to.items() if s == "a"]
    sites["a"].alive = False
    run.on_site_lost("a")
    assert set(lost) <= run.unbound  # site b is full: they wait for a free slot
    done = next(t for t, s in run.bound_to.items() if s == "b")
    actions = run.on_output("b", done, Output(b"", {"value": 1}), _record(done, "b"))
    (rebound,) = _binds(actions, "b")
    assert rebound.spec.task_id == min(lost) and rebound.attempt == 1

    sites = _sites(("a", 1, ("d0",)), ("b", 1, ("d1",)))
    run = JobRun(_spin_job(3), EngineMode.sol(on_site_failure="rerun"), sites)
    run.start()
    sites["a"].alive = False
    with pytest.raises(JobFailedError, match="site 'a' was lost and no connected site"):
        run.on_site_lost("a")

    sites = _sites(("a", 1, ("d0",)), ("b", 1, ("d0", "d1")))
    run = JobRun(_spin_job(3), EngineMode.sol(on_site_failure="fail"), sites)
    run.start()
    sites["a"].alive = False
    with pytest.raises(JobFailedError, match=r"site .a. was lost .*\(on_site_failure=fail\)"):
        run.on_site_lost("a")


def test_a_task_failure_fails_the_job_unless_the_task_was_rerun_elsewhere_meanwhile():
    sites = _sites(("a", 1, ("d0",)), ("b", 1, ("d0", "d1")))
    run = JobRun(_spin_job(3), EngineMode.sol(max_degree=2), sites)
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
    run.on_output("b", done, Output(b"", {"value": 1}), _record(done, "b"))
    assert run.on_task_failed("b", done, "late") == []  # already counted
    assert run.stats["stale_failures"] == 2


def test_a_site_that_falls_behind_has_queued_tasks_reclaimed():
    sites = _sites(("slow", 1, ("d0",)), ("fast", 1, ("d0",)))
    for view in sites.values():
        view.observe_rtt(0.05)
        view.observe_task(0.01)
    run = JobRun(_spin_job(12, datasets=("d0",)), EngineMode.sol(max_degree=5), sites)
    run.start()
    assert not run.unbound  # 1 worker + 5 queued at each site
    for _ in range(3):  # the slow site's tasks turn out slow
        sites["slow"].observe_task(0.5)
    actions = []
    for task_id in [t for t, s in run.bound_to.items() if s == "fast"]:
        actions += run.on_output("fast", task_id, Output(b"", {"value": 1}),
                                 _record(task_id, "fast"))
    reclaims = [a for a in actions if isinstance(a, Reclaim)]
    assert len(reclaims) == 1 and reclaims[0].site == "slow"
    given = reclaims[0].task_ids
    assert len(given) == 2  # half the slow site's queue
    rebinds = run.on_reclaimed("slow", given)
    assert {b.spec.task_id for b in _binds(rebinds, "fast")} == set(given)
    assert all(b.attempt == 1 for b in _binds(rebinds))
    # A reclaimed task that the slow site had started anyway is not counted twice.
    out = Output(b"", {"value": 1})
    run.on_output("fast", given[0], out, _record(given[0], "fast"))
    run.on_output("slow", given[0], out, _record(given[0], "slow"))
    assert run.stats["duplicates"] == 1


def test_job_refuses_a_task_no_site_can_run():
    sites = _sites(("a", 1, ("d0",)))
    run = JobRun(_spin_job(1, datasets=("d9",)), EngineMode.sol(), sites)
    with pytest.raises(JobFailedError, match="needs dataset 'd9'"):
        run.start()


def test_histogram_merge_is_independent_of_arrival_order():
    rng = np.random.default_rng(0)
    outs = [Output(rng.integers(0, 9, 8).astype("<i8").tobytes(), {"rows": 8, "sum": 0.5})
            for _ in range(5)]
    forward = sum_count_outputs(outs)
    backward = sum_count_outputs(outs[::-1])
    assert forward.payload == backward.payload
    assert forward.meta["rows"] == 40


def test_a_pushed_input_is_evicted_once_no_task_needs_it():
    sites = _sites(("a", 1, ("d0",)))
    job = JobBuilder("evict")
    job.constant("w", Output(b"abc", {}))
    first = job.site_task("t1", "silo.spin", {}, ["w"], dataset="d0")
    second = job.site_task("t2", "silo.spin", {}, ["w", first], dataset="d0")
    job.merge("total", lambda outs: outs[0], [second])
    run = JobRun(job.build(results=["total"]), EngineMode.sol(max_degree=1), sites)
    actions = run.start()
    assert [a for a in actions if isinstance(a, Push)] == [Push("a", "w")]
    after_first = run.on_output("a", "t1", Output(b"1", {}), _record("t1", "a"))
    assert not [a for a in after_first if isinstance(a, Evict)]  # t2 still needs "w"
    after_second = run.on_output("a", "t2", Output(b"2", {}), _record("t2", "a"))
    assert Evict("a", "w") in after_second and Evict("a", "t1") in after_second
    assert "w" not in run.outputs and run.complete


def test_optional_task_of_a_lost_site_is_skipped_and_the_job_goes_on():
    sites = _sites(("a", 1, ("d0",)), ("b", 1, ("d1",)))
    job = JobBuilder("opt")
    job.site_task("ta", "silo.spin", {}, dataset="d0", site="a", optional=True)
    job.site_task("tb", "silo.spin", {}, dataset="d1", site="b", optional=True)
    run = JobRun(job.build(results=["ta", "tb"]), EngineMode.sol(), sites)
    run.start()
    run.on_output("a", "ta", Output(b"x", {}), _record("ta", "a"))
    sites["b"].alive = False
    run.on_site_lost("b")
    assert run.complete
    assert run.outputs["tb"].meta["skipped"].startswith("site 'b' was lost")
    assert run.outputs["ta"].payload == b"x"
    assert run.stats["skipped"] == 1


def test_required_task_of_a_lost_site_still_fails_the_job():
    sites = _sites(("a", 1, ("d0",)), ("b", 1, ("d1",)))
    job = JobBuilder("req")
    job.site_task("ta", "silo.spin", {}, dataset="d0", site="a")
    job.site_task("tb", "silo.spin", {}, dataset="d1", site="b")
    run = JobRun(job.build(results=["ta", "tb"]), EngineMode.sol(), sites)
    run.start()
    sites["b"].alive = False
    with pytest.raises(JobFailedError, match="no connected site can run task 'tb'"):
        run.on_site_lost("b")


class _ByteSum:
    """A block merge for hand checks: the byte-wise sum (mod 256) of its inputs."""

    block_bytes = 4

    def merge_block(self, inputs, metas):
        return (sum(np.frombuffer(v, np.uint8).astype(np.int64) for v in inputs) % 256
                ).astype(np.uint8).tobytes()

    def finish_meta(self, metas):
        return {"inputs": len(metas)}


def _streaming_job(blocks=None):
    """t0 (d0) and t1 (d1) -> block merge g -> task "next" (d0) consuming g."""
    job = JobBuilder("stream")
    job.constant("w", Output(bytes(range(8)), {}))
    t0 = job.site_task("t0", "silo.spin", {}, ["w"], dataset="d0")
    t1 = job.site_task("t1", "silo.spin", {}, ["w"], dataset="d1")
    g = job.block_merge("g", blocks or _ByteSum(), ["w", t0, t1])
    job.site_task("next", "silo.spin", {}, [g], dataset="d0")
    return job.build(results=["next"])


def _filled(first_half: bytes) -> bytearray:
    buf = bytearray(8)
    buf[:4] = first_half
    return buf


def test_block_merge_streams_blocks_to_the_consumer_site_and_seals_them():
    sites = _sites(("a", 1, ("d0",)), ("b", 1, ("d1",)))
    run = JobRun(_streaming_job(), EngineMode.sol(max_degree=2), sites)
    assert {b.spec.task_id: b.site for b in _binds(run.start())} == {
        "t0": "a", "t1": "b", "next": "a"}
    buf0, buf1 = _filled(b"\x01" * 4), _filled(b"\x10" * 4)
    # Block 0 is merged once both uploads hold it, and pushed to where "next" is bound.
    assert run.on_progress("a", "t0", 0, {}, buf0, 4) == []
    first = run.on_progress("b", "t1", 0, {}, buf1, 4)
    assert first == [PushPart("a", "g", 0, bytes([0x11, 0x12, 0x13, 0x14]), 8)]
    buf0[4:], buf1[4:] = b"\x02" * 4, b"\x20" * 4
    run.on_output("a", "t0", Output(buf0, {}), _record("t0", "a"))
    last = run.on_output("b", "t1", Output(buf1, {}), _record("t1", "b"))
    # The rest goes as a part, then the seal; no whole push of "g".
    assert PushPart("a", "g", 4, bytes([0x26, 0x27, 0x28, 0x29]), 8) in last
    assert Seal("a", "g") in last
    assert not [a for a in last if isinstance(a, Push)]
    assert run.outputs["g"] == Output(bytes([0x11, 0x12, 0x13, 0x14, 0x26, 0x27, 0x28, 0x29]),
                                      {"inputs": 3})
    assert run.stats["streamed_merges"] == 1 and run.stats["abandoned_streams"] == 0


def test_block_merge_is_whole_in_baseline_and_the_same_bytes():
    outputs = {}
    for name, mode in {"sol": EngineMode.sol(max_degree=2),
                       "baseline": EngineMode.baseline()}.items():
        run = JobRun(_streaming_job(), mode, _sites(("a", 1, ("d0",)), ("b", 1, ("d1",))))
        run.start()
        run.on_request("a", 1)
        run.on_request("b", 1)
        buf0, buf1 = _filled(b"\x01" * 4), _filled(b"\x10" * 4)
        parts = run.on_progress("a", "t0", 0, {}, buf0, 8)
        parts += run.on_progress("b", "t1", 0, {}, buf1, 8)
        assert bool(parts) == (name == "sol")
        run.on_output("a", "t0", Output(buf0, {}), _record("t0", "a"))
        run.on_output("b", "t1", Output(buf1, {}), _record("t1", "b"))
        outputs[name] = run.outputs["g"]
    assert outputs["sol"] == outputs["baseline"]


def test_a_stream_whose_input_was_accepted_from_another_buffer_is_merged_again_whole():
    sites = _sites(("a", 1, ("d0",)), ("b", 1, ("d1",)))
    run = JobRun(_streaming_job(), EngineMode.sol(max_degree=2), sites)
    run.start()
    buf0, buf1 = _filled(b"\x01" * 4), _filled(b"\x10" * 4)
    run.on_progress("a", "t0", 0, {}, buf0, 4)
    assert run.on_progress("b", "t1", 0, {}, buf1, 4)  # block 0 went out from buf1's bytes
    buf0[4:] = b"\x02" * 4
    run.on_output("a", "t0", Output(buf0, {}), _record("t0", "a"))
    other = bytes([0x30] * 8)  # t1 accepted from another upload: block 0 was wrong
    last = run.on_output("b", "t1", Output(other, {}), _record("t1", "b"))
    assert Push("a", "g") in last and not [a for a in last if isinstance(a, Seal)]
    assert run.outputs["g"].payload == bytes([0x31, 0x32, 0x33, 0x34, 0x36, 0x37, 0x38, 0x39])
    assert run.stats["abandoned_streams"] == 1



class _NeedsCount(_ByteSum):
    """Like :class:`_ByteSum`, but each input's metadata must carry ``n``."""

    def merge_block(self, inputs, metas):
        assert all("n" in meta for meta in metas[1:]), "an input without n"
        return super().merge_block(inputs, metas)


def test_a_stream_the_merge_cannot_use_is_abandoned_and_the_merge_runs_whole():
    sites = _sites(("a", 1, ("d0",)), ("b", 1, ("d1",)))
    run = JobRun(_streaming_job(_NeedsCount()), EngineMode.sol(max_degree=2), sites)
    run.start()
    buf0, buf1 = _filled(b"\x01" * 4), _filled(b"\x10" * 4)
    run.on_progress("a", "t0", 0, {"n": 1}, buf0, 4)
    assert run.on_progress("b", "t1", 0, {}, buf1, 4) == []  # no "n" yet: not streamed
    assert run.stats["abandoned_streams"] == 1 and "g" not in run.streams
    buf0[4:], buf1[4:] = b"\x02" * 4, b"\x20" * 4
    run.on_output("a", "t0", Output(buf0, {"n": 1}), _record("t0", "a"))
    last = run.on_output("b", "t1", Output(buf1, {"n": 1}), _record("t1", "b"))
    assert Push("a", "g") in last
    assert run.outputs["g"].payload == bytes([0x11, 0x12, 0x13, 0x14, 0x26, 0x27, 0x28, 0x29])

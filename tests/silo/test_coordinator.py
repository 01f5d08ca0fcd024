"""The coordinator with real sites: merges run off its event loop."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from fedsys.silo.job import JobBuilder
from fedsys.silo.mode import EngineMode, JobFailedError
from fedsys.silo.task_registry import Output

MERGE_S = 1.0


def _job_with_merge(datasets, merge, out_bytes=1 << 20):
    job = JobBuilder("merge")
    ids = [job.site_task(f"spin/{d}/{i}", "silo.spin",
                         {"ms": 5, "value": 1, "out_bytes": out_bytes}, dataset=d)
           for d in datasets for i in range(2)]
    job.merge("total", merge, ids)
    return job.build(results=["total"])


async def _run_with_timer(coordinator, job, mode, period_s=0.01):
    """Run ``job`` while a periodic timer ticks on the coordinator's loop; the result and
    the longest gap between ticks."""
    longest, last = 0.0, time.perf_counter()
    task = asyncio.create_task(coordinator.run_job(job, mode, timeout_s=60))
    while not task.done():
        await asyncio.sleep(period_s)
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
    return task.result(), longest


@pytest.mark.parametrize("mode", [EngineMode.sol(), EngineMode.baseline()],
                         ids=["sol", "baseline"])
def test_the_loop_keeps_serving_while_a_long_merge_runs(cluster, mode):
    c, runner = cluster
    seen = {}

    def merge(outputs):
        seen["thread"] = threading.get_ident()
        total = sum(int.from_bytes(o.payload[:8], "little") for o in outputs)
        time.sleep(MERGE_S)  # a merge that grows with the data holds its thread this long
        return Output(b"", {"value": total, "bytes": sum(len(o.payload) for o in outputs)})

    job = _job_with_merge(c.datasets, merge)
    result, longest_gap_s = runner.run(_run_with_timer(c.coordinator, job, mode))
    assert result.outputs["total"].meta == {"value": 4, "bytes": 4 << 20}
    assert seen["thread"] != runner.thread.ident
    assert result.duration_s >= MERGE_S
    assert longest_gap_s < MERGE_S / 2  # the timer never waited for the merge


def test_a_merge_that_raises_fails_the_job_naming_it(cluster):
    c, runner = cluster

    def merge(outputs):
        raise ValueError("inputs disagree")

    job = _job_with_merge(c.datasets, merge, out_bytes=8)
    with pytest.raises(JobFailedError, match="merge 'total' failed: ValueError: inputs disagree"):
        runner.run(c.coordinator.run_job(job, EngineMode.sol(), timeout_s=60))
    ok = _job_with_merge(c.datasets, lambda outs: Output(b"", {"n": len(outs)}), out_bytes=8)
    assert runner.run(c.coordinator.run_job(ok, EngineMode.sol())).outputs["total"].meta == {
        "n": 4}  # the coordinator runs the next job as usual

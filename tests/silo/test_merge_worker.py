"""Merges computed in a worker thread while the event loop keeps turning."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np

from fedsys.silo.actions import RunMerge
from fedsys.silo.histogram_job import sum_count_outputs
from fedsys.silo.merge_worker import MergeWorker
from fedsys.silo.task_registry import Output
from fedsys.wire.chunks import sha256_hex


async def _tick_while(done: asyncio.Event, period_s: float = 0.01) -> float:
    """Tick every ``period_s`` until ``done``; the longest gap between two ticks."""
    longest, last = 0.0, time.perf_counter()
    while not done.is_set():
        await asyncio.sleep(period_s)
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
    return longest


def test_a_long_merge_runs_off_the_loop_and_hands_its_output_back_on_it():
    inputs = [Output(np.arange(1 << 16, dtype="<i8").tobytes(), {"rows": 1}) for _ in range(3)]
    threads: dict[str, int] = {}

    def slow_merge() -> Output:
        threads["merge"] = threading.get_ident()
        time.sleep(0.6)  # a merge that holds its thread for a while
        return sum_count_outputs(inputs)

    async def main() -> tuple[Output, float]:
        done, got = asyncio.Event(), []

        def on_output(output: Output) -> None:
            threads["handed_back"] = threading.get_ident()
            got.append(output)
            done.set()

        worker = MergeWorker()
        worker.start(RunMerge("total", slow_merge, sealed=True), on_output,
                     lambda exc: done.set())
        longest = await asyncio.wait_for(_tick_while(done), timeout=10)
        assert worker.digests["total"] == sha256_hex(got[0].payload)
        return got[0], longest

    loop_thread = threading.get_ident()
    output, longest_gap_s = asyncio.run(main())
    np.testing.assert_array_equal(np.frombuffer(output.payload, "<i8"),
                                  3 * np.arange(1 << 16))
    assert threads["merge"] != loop_thread and threads["handed_back"] == loop_thread
    assert longest_gap_s < 0.3  # the loop never waited on the 0.6 s merge


def test_a_merge_that_raises_is_reported_on_the_loop():
    def broken() -> Output:
        raise ValueError("bad input")

    async def main() -> list[Exception]:
        errors: list[Exception] = []
        done = asyncio.Event()

        def on_error(exc: Exception) -> None:
            errors.append(exc)
            done.set()

        MergeWorker().start(RunMerge("m", broken), lambda output: done.set(), on_error)
        await asyncio.wait_for(done.wait(), timeout=10)
        return errors

    (error,) = asyncio.run(main())
    assert isinstance(error, ValueError) and "bad input" in str(error)

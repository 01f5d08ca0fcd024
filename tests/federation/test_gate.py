"""Fair share of the sites: silo jobs take turns round-robin over the analysts waiting.

The gate is driven with a stand-in for the coordinator whose jobs end when the test
says so, so the order of turns can be checked exactly; the real coordinator behind
the gate is exercised in tests/silo/test_standing.py.
"""

from __future__ import annotations

import asyncio

import pytest

from fedsys.federation.gate import FairGate, SiteRefusedError
from fedsys.silo.job import JobBuilder
from fedsys.silo.mode import EngineMode, JobFailedError


class HeldCoordinator:
    """Runs one job at a time; each ends when :meth:`finish` is called."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.cancelled: list[str] = []
        self._release: asyncio.Event | None = None

    async def run_job(self, job, mode, timeout_s, analyst=""):
        assert self._release is None, "two jobs ran at once"
        self.order.append(f"{analyst}:{job.name}")
        self._release = asyncio.Event()
        try:
            await self._release.wait()
        finally:
            self._release = None
        if self.cancelled:
            raise RuntimeError("cancelled")
        return job.name

    def cancel(self, reason: str) -> bool:
        self.cancelled.append(reason)
        if self._release is not None:
            self._release.set()
        return True

    async def finish(self) -> None:
        while self._release is None:
            await asyncio.sleep(0)
        self._release.set()
        await asyncio.sleep(0)


def _job(name: str):
    builder = JobBuilder(name)
    return builder.build([builder.site_task("t", "x")])


def test_waiting_analysts_take_turns_whoever_queued_more():
    async def scenario() -> list[str]:
        coordinator = HeldCoordinator()
        gate = FairGate(coordinator)  # type: ignore[arg-type]
        runs = [asyncio.ensure_future(gate.run_job(_job(name), EngineMode(), 10, who, name))
                for who, name in [("alice", "a1"), ("alice", "a2"), ("alice", "a3"),
                                  ("bob", "b1"), ("bob", "b2")]]
        for _ in runs:
            await coordinator.finish()
        await asyncio.gather(*runs)
        return coordinator.order

    order = asyncio.run(scenario())

    assert order == ["alice:a1", "alice:a2", "bob:b1", "alice:a3", "bob:b2"]


def test_a_cancelled_waiter_leaves_the_queue_and_a_cancelled_holder_cancels_its_job():
    async def scenario() -> tuple[list[str], list[str]]:
        coordinator = HeldCoordinator()
        gate = FairGate(coordinator)  # type: ignore[arg-type]
        holder = asyncio.ensure_future(gate.run_job(_job("a1"), EngineMode(), 10, "alice", "a"))
        waiter = asyncio.ensure_future(gate.run_job(_job("b1"), EngineMode(), 10, "bob", "b"))
        await asyncio.sleep(0.01)
        waiter.cancel()
        holder.cancel()
        for task in (holder, waiter):
            with pytest.raises(asyncio.CancelledError):
                await task
        return coordinator.order, coordinator.cancelled

    order, cancelled = asyncio.run(scenario())

    assert order == ["alice:a1"]
    assert cancelled == ["job a was cancelled"]


class RefusingCoordinator:
    """Fails every job; ``refusals`` as the real coordinator reads them from
    ``TaskDone.refused``."""

    def __init__(self, refusals: list[tuple[str, str]]) -> None:
        self.refusals = refusals

    async def run_job(self, job, mode, timeout_s, analyst=""):
        raise JobFailedError("task 't' failed on site 's1': refused by the site's rules")

    def cancel(self, reason: str) -> bool:
        return False


def test_a_sites_refusal_comes_out_of_the_gate_naming_site_and_reason():
    refusals = [("s1", "column x is not exposed"), ("s1", "column x is not exposed"),
                ("s2", "budget spent")]
    gate = FairGate(RefusingCoordinator(refusals))  # type: ignore[arg-type]

    with pytest.raises(SiteRefusedError) as refused:
        asyncio.run(gate.run_job(_job("q"), EngineMode.sol(), 5.0, "alice", "j1"))

    assert refused.value.refusals == [("s1", "column x is not exposed"), ("s2", "budget spent")]
    assert str(refused.value) == ("refused by site s1: column x is not exposed; "
                                  "refused by site s2: budget spent")
    assert gate.holder is None


def test_a_failure_without_refusals_stays_a_plain_failure():
    gate = FairGate(RefusingCoordinator([]))  # type: ignore[arg-type]

    with pytest.raises(JobFailedError) as failed:
        asyncio.run(gate.run_job(_job("q"), EngineMode.sol(), 5.0, "alice", "j1"))

    assert not isinstance(failed.value, SiteRefusedError)

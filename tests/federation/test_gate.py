"""Fair share of the sites: up to ``slots`` silo jobs at once, the next slot to the waiting
analyst with the fewest running (round-robin between equals).

The gate is driven with a stand-in for the coordinator whose jobs end when the test
says so, so the order of admissions can be checked exactly; the real coordinator behind
the gate is exercised in tests/silo/test_standing.py and test_concurrent_jobs.py.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from fedsys.federation.gate import AnalystView, FairGate, SiteRefusedError
from fedsys.silo.active_job import JobRefusedError
from fedsys.silo.job import JobBuilder
from fedsys.silo.mode import EngineMode, JobFailedError


class HeldCoordinator:
    """Runs jobs that each end when :meth:`finish` is called (oldest first)."""

    def __init__(self, slots: int = 1) -> None:
        self.slots = slots
        self.order: list[str] = []
        self.cancelled: list[str] = []
        self.running: list[tuple[str, asyncio.Event]] = []
        self.most_at_once = 0

    async def run_job(self, job, mode, timeout_s, analyst=""):
        name = f"{analyst}:{job.name}"
        release = asyncio.Event()
        self.running.append((name, release))
        self.most_at_once = max(self.most_at_once, len(self.running))
        assert len(self.running) <= self.slots, "more jobs ran at once than the gate's slots"
        self.order.append(name)
        try:
            await release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(name)
            raise
        finally:
            self.running.remove((name, release))
        return job.name

    async def finish(self, name: str | None = None) -> None:
        while not self.running:
            await asyncio.sleep(0)
        for running, release in self.running:
            if name is None or running == name:
                release.set()
                break
        for _ in range(3):
            await asyncio.sleep(0)


def _job(name: str):
    builder = JobBuilder(name)
    return builder.build([builder.site_task("t", "x")])


def test_waiting_analysts_take_turns_whoever_queued_more():
    async def scenario() -> list[str]:
        coordinator = HeldCoordinator()
        gate = FairGate(coordinator)  # type: ignore[arg-type]
        runs = [
            asyncio.ensure_future(gate.run_job(_job(name), EngineMode(), 10, who, name))
            for who, name in [
                ("alice", "a1"),
                ("alice", "a2"),
                ("alice", "a3"),
                ("bob", "b1"),
                ("bob", "b2"),
            ]
        ]
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
    assert cancelled == ["alice:a1"]  # the running job was cancelled at the coordinator


def test_up_to_slots_jobs_run_at_once_and_a_freed_slot_goes_to_the_analyst_running_fewest():
    async def scenario() -> tuple[list[str], int]:
        coordinator = HeldCoordinator(slots=2)
        gate = FairGate(coordinator, slots=2)  # type: ignore[arg-type]
        runs = [
            asyncio.ensure_future(gate.run_job(_job(name), EngineMode(), 10, who, name))
            for who, name in [
                ("alice", "a1"),
                ("alice", "a2"),
                ("alice", "a3"),
                ("alice", "a4"),
                ("bob", "b1"),
            ]
        ]
        await asyncio.sleep(0.01)
        assert sorted(gate.holders.values()) == ["alice", "alice"]  # both slots, at once
        await coordinator.finish("alice:a1")  # bob runs none: the slot is his
        await coordinator.finish("alice:a2")
        while coordinator.running:
            await coordinator.finish()
        await asyncio.gather(*runs)
        return coordinator.order, coordinator.most_at_once

    order, most_at_once = asyncio.run(scenario())

    assert order == ["alice:a1", "alice:a2", "bob:b1", "alice:a3", "alice:a4"]
    assert most_at_once == 2


class RefusingCoordinator:
    """Fails every job, with the ``refusals`` the real coordinator reads from
    ``TaskDone.refused``."""

    def __init__(self, refusals: list[tuple[str, str]]) -> None:
        self.refusals = refusals

    async def run_job(self, job, mode, timeout_s, analyst=""):
        message = "task 't' failed on site 's1': refused by the site's rules"
        if self.refusals:
            raise JobRefusedError(message, self.refusals)
        raise JobFailedError(message)


def test_a_sites_refusal_comes_out_of_the_gate_naming_site_and_reason():
    refusals = [
        ("s1", "column x is not exposed"),
        ("s1", "column x is not exposed"),
        ("s2", "budget spent"),
    ]
    gate = FairGate(RefusingCoordinator(refusals))  # type: ignore[arg-type]

    with pytest.raises(SiteRefusedError) as refused:
        asyncio.run(gate.run_job(_job("q"), EngineMode.sol(), 5.0, "alice", "j1"))

    assert refused.value.refusals == [("s1", "column x is not exposed"), ("s2", "budget spent")]
    assert str(refused.value) == (
        "refused by site s1: column x is not exposed; refused by site s2: budget spent"
    )
    assert not gate.holders


def test_a_failure_without_refusals_stays_a_plain_failure():
    gate = FairGate(RefusingCoordinator([]))  # type: ignore[arg-type]

    with pytest.raises(JobFailedError) as failed:
        asyncio.run(gate.run_job(_job("q"), EngineMode.sol(), 5.0, "alice", "j1"))

    assert not isinstance(failed.value, SiteRefusedError)


class SitesCoordinator(HeldCoordinator):
    """A stand-in whose connected sites the test sets (what ``live_sites`` reports)."""

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = list(names)

    def live_sites(self):
        return [SimpleNamespace(name=n, datasets={"digits"}, rtt_s=0.01) for n in self.names]


def test_a_site_gone_between_rounds_fails_a_fail_policy_job_naming_it() -> None:
    coordinator = SitesCoordinator(["a", "b"])
    view = AnalystView(FairGate(coordinator), "alice", "job-1", policy="fail")
    coordinator.names = ["a"]
    with pytest.raises(JobFailedError, match=r"site 'b' was lost before round 3 of job 'job-1'"):
        asyncio.run(view.round_sites("digits", ["a", "b"], "round 3"))


def test_under_the_wait_policy_the_next_round_waits_for_the_site_and_includes_newcomers() -> None:
    coordinator = SitesCoordinator(["a"])
    lines: list[str] = []
    view = AnalystView(FairGate(coordinator), "alice", "job-1", wait_s=10, log=lines.append)

    async def rejoin_later() -> list[str]:
        asyncio.get_running_loop().call_later(0.3, coordinator.names.extend, ["b", "c"])
        return await view.round_sites("digits", ["a", "b"], "round 2")

    assert asyncio.run(rejoin_later()) == ["a", "b", "c"]
    assert "site 'b' was lost before round 2" in lines[0]
    view.wait_s = 0.3
    coordinator.names = ["a"]
    with pytest.raises(JobFailedError, match=r"\['b'\] did not rejoin within 0 s"):
        asyncio.run(view.round_sites("digits", ["a", "b"], "round 3"))

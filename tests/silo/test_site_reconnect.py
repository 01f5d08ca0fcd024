"""A site manager and a real coordinator: the site never gives up on a link that is
down, and stops at once when the coordinator refuses its token.

A standing site must come back after a cut or a coordinator restart of any length, so
its default backoff has no attempt limit; the one failure that dialling again cannot
fix, a refused token, ends it with a one-line error instead of retrying forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from fedsys.silo.coordinator import SiloCoordinator
from fedsys.silo.job import JobBuilder
from fedsys.silo.mode import EngineMode, JobFailedError
from fedsys.silo.site import SiteManager, SiteSettings
from fedsys.silo.task_registry import Output
from fedsys.wire import auth
from fedsys.wire.supervise import end_group, fedsys_command, spawn
from fedsys.wire.transport import ChannelSecurity, ServerSecurity
from tests.netproxy import NetProxy

DIALS = 40
"""Failed dials the site goes through during the cut (twice the old limit of 20)."""


def _fast(settings: SiteSettings) -> SiteSettings:
    """The default settings with millisecond waits (the attempt limit left as it is)."""
    return replace(settings, backoff=replace(settings.backoff, base_s=0.005, cap_s=0.01))


def test_a_site_outlasts_any_number_of_failed_dials_and_rejoins(tmp_path):
    tokens = auth.issue_tokens(tmp_path, ["site-a"])

    async def scenario() -> tuple[int, bool, int]:
        coordinator = SiloCoordinator(tmp_path / auth.TOKENS_FILE, ServerSecurity(insecure=True))
        proxy = NetProxy("127.0.0.1", await coordinator.start())
        await asyncio.to_thread(proxy.start)
        settings = _fast(SiteSettings(workers=1, comm_workers=1))
        site = SiteManager(f"127.0.0.1:{proxy.port}", tokens["site-a"],
                           ChannelSecurity(insecure=True), {}, "site-a", settings)
        stop = asyncio.Event()
        running = asyncio.create_task(site.run(stop))
        try:
            await coordinator.wait_for_sites(1, 120)
            await asyncio.to_thread(proxy.cut)
            deadline = time.monotonic() + 60
            while proxy.resets < DIALS:
                if running.done():
                    running.result()  # the site gave up: its error fails the test
                    raise AssertionError("the site stopped during the cut")
                assert time.monotonic() < deadline, f"only {proxy.resets} dials in 60 s"
                await asyncio.sleep(0.05)
            dials, lost = proxy.resets, not coordinator.live_sites()
            await asyncio.to_thread(proxy.restore)
            live = await coordinator.wait_for_sites(1, 30)
            return dials, lost, sum(v.name == "site-a" and v.alive for v in live)
        finally:
            await _stop(running, stop, proxy, coordinator)

    dials, lost, rejoined = asyncio.run(scenario())

    assert dials >= DIALS
    assert lost  # the coordinator saw the site go during the cut
    assert rejoined == 1


def test_a_site_whose_token_is_refused_stops_at_once_with_one_line(tmp_path):
    auth.issue_tokens(tmp_path, ["site-a"])
    forged = tmp_path / "forged.token"
    forged.write_text("not-a-token\n")
    data = tmp_path / "d0.npz"
    np.savez(data, values=np.zeros(4))

    async def serve() -> int:
        coordinator = SiloCoordinator(tmp_path / auth.TOKENS_FILE, ServerSecurity(insecure=True))
        port = await coordinator.start()
        cmd = fedsys_command("silo", "site", "--coordinator", f"127.0.0.1:{port}",
                             "--token-file", str(forged), "--name", "site-a", "--insecure",
                             "--workers", "1", "--data", f"d0={data}", module="fedsys.cli")
        proc = spawn(cmd, tmp_path / "site.log")
        try:
            return await asyncio.to_thread(proc.wait, 90)  # it would retry forever
        finally:
            end_group(proc, term_grace_s=0.0)
            await coordinator.stop()

    status = asyncio.run(serve())
    log = Path(tmp_path / "site.log").read_text()

    last = log.strip().splitlines()[-1] if log.strip() else ""
    assert status == 1, log[-2000:]
    assert last.startswith("error: ") and "refused this site: unknown token" in last, log[-2000:]
    assert "Traceback" not in log, log[-2000:]



def test_a_task_cut_off_mid_run_gives_its_worker_back_once(tmp_path):
    # The task goes on computing after its session ends and frees its worker when it
    # finishes: the next session must not count that worker free from its start too, or
    # every cut mid-task would hand the pool one more task than it has workers.
    tokens = auth.issue_tokens(tmp_path, ["site-a"])
    data = tmp_path / "d0.npz"
    np.savez(data, values=np.zeros(4))
    job = JobBuilder("spin")
    spin = job.site_task("spin/d0/0", "silo.spin", {"ms": 1500, "value": 1}, dataset="d0")
    job.merge("total", lambda outs: Output(b"", {"value": sum(o.meta["value"] for o in outs)}),
              [spin])
    built = job.build(results=["total"])

    async def scenario() -> tuple[int, int, str]:
        coordinator = SiloCoordinator(tmp_path / auth.TOKENS_FILE, ServerSecurity(insecure=True))
        proxy = NetProxy("127.0.0.1", await coordinator.start())
        await asyncio.to_thread(proxy.start)
        settings = _fast(SiteSettings(workers=1, comm_workers=1))
        site = SiteManager(f"127.0.0.1:{proxy.port}", tokens["site-a"],
                           ChannelSecurity(insecure=True), {"d0": str(data)}, "site-a", settings)
        stop = asyncio.Event()
        running = asyncio.create_task(site.run(stop))
        try:
            await coordinator.wait_for_sites(1, 120)
            result = asyncio.create_task(
                coordinator.run_job(built, EngineMode.sol(on_site_failure="fail"), 60))
            await _until(lambda: site._free == 0, 30, "the site to start the task")
            await asyncio.to_thread(proxy.cut)
            error = ""
            try:
                await asyncio.wait_for(result, 30)
            except JobFailedError as exc:
                error = str(exc)
            await asyncio.to_thread(proxy.restore)
            await coordinator.wait_for_sites(1, 30)
            busy = site._free  # the cut task still computes
            await _until(lambda: not site._tasks, 30, "the cut task to finish")
            return busy, site._free, error
        finally:
            await _stop(running, stop, proxy, coordinator)

    busy, free, error = asyncio.run(scenario())

    assert "site 'site-a' was lost" in error
    assert busy == 0
    assert free == 1  # one worker, free once its task ended


async def _stop(running: asyncio.Task[None], stop: asyncio.Event, proxy: NetProxy,
                coordinator: SiloCoordinator) -> None:
    """End the site, the proxy and the coordinator, whatever happened before."""
    stop.set()
    try:
        with contextlib.suppress(Exception):  # the test has already failed on its error
            await asyncio.wait_for(running, 30)
    finally:
        try:
            await asyncio.to_thread(proxy.close)
        finally:
            await coordinator.stop()


async def _until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)

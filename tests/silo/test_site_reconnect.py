"""A site manager and a real coordinator: the site never gives up on a link that is
down, and stops at once when the coordinator refuses its token.

A standing site must come back after a cut or a coordinator restart of any length, so
its default backoff has no attempt limit; the one failure that dialling again cannot
fix, a refused token, ends it with a one-line error instead of retrying forever.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from fedsys.silo.coordinator import SiloCoordinator
from fedsys.silo.site import SiteManager, SiteSettings
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

    async def scenario() -> tuple[int, int]:
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
            dials = proxy.resets
            await asyncio.to_thread(proxy.restore)
            live = await coordinator.wait_for_sites(1, 30)
            return dials, sum(v.name == "site-a" and v.alive for v in live)
        finally:
            stop.set()
            await asyncio.wait_for(running, 30)
            await asyncio.to_thread(proxy.close)
            await coordinator.stop()

    dials, rejoined = asyncio.run(scenario())

    assert dials >= DIALS
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

    assert status == 1
    assert "refused this site" in log and "unknown token" in log, log[-2000:]
    assert "Traceback" not in log
    assert log.count('"reconnecting"') == 0  # no retry: dialling again cannot fix it


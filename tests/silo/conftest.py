"""Real silo deployments for the runtime tests: a coordinator on a loop thread, site processes.

Each fixture starts its cluster once per module (site processes import PyTorch, which
takes seconds on this machine) and always kills every process it started.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from fedsys.silo.local_federation import LocalCluster
from fedsys.silo.shaper import LinkSettings

RTT_S = 0.06


class LoopThread:
    """An event loop on a daemon thread: the coordinator keeps serving between calls."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout_s: float = 180.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def submit(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def _start(workdir: Path, **kwargs: Any) -> Iterator[tuple[LocalCluster, LoopThread]]:
    runner = LoopThread()
    cluster = LocalCluster(workdir, **kwargs)
    try:
        runner.run(cluster.start(), timeout_s=240)
        yield cluster, runner
    finally:
        runner.run(cluster.close(), timeout_s=60)
        runner.close()
        for proc in cluster.processes:
            assert proc.poll() is not None, "a site process outlived its fixture"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[tuple[LocalCluster, LoopThread]]:
    """Two sites (two workers each) behind a 60 ms RTT, TLS and tokens on."""
    yield from _start(tmp_path_factory.mktemp("silo"), sites=2, workers=2, comm_workers=2,
                      link=LinkSettings.symmetric(RTT_S), data_rows=40_000, data_samples=128,
                      data_features=16)


@pytest.fixture(scope="module")
def fault_cluster(tmp_path_factory) -> Iterator[tuple[LocalCluster, LoopThread]]:
    """Three sites; site-1 also holds a replica of site-0's dataset ``d0``."""
    workdir = tmp_path_factory.mktemp("silo-faults")
    replica = {1: {"d0": workdir / "data" / "d0.npz"}}
    yield from _start(workdir, sites=3, workers=1, comm_workers=1,
                      link=LinkSettings.symmetric(0.02), data_rows=1000, data_samples=32,
                      data_features=4, extra_datasets=replica, insecure=True)


def past_round(client: Any, job_id: str, round_number: int) -> bool:
    """Whether a training job's progress (``round N/M``) has reached round ``round_number``.

    Rounds of a small model on loopback take tens of milliseconds, so a test polling for
    one exact progress string can miss it: it asks for "at least" instead.
    """
    progress = client.status(job_id).progress
    if not progress.startswith("round "):
        return False
    return int(progress.split()[1].split("/")[0]) >= round_number

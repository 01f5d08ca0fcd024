"""A coordinator that breaks the rules meets real sites that keep them.

The coordinator here is hand-written: a gRPC servicer speaking silo.proto that hands
each site whatever tasks it likes (an exact answer on a DP-only column, a hidden
column, its own "site policy", more budget than the site has). The sites are real
``fedsys silo site --config site.yaml`` processes; they must refuse, charge their own
ledger before reading a row, and audit every decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from fedsys.analytics.encoding import decode_table
from fedsys.silo.audit import read_audit
from fedsys.wire.protos import silo_pb2, silo_pb2_grpc
from fedsys.wire.supervise import end_all, fedsys_command, spawn
from tests.analytics.conftest import LoopThread

SUM_V = "SELECT label, SUM(v) AS s FROM data GROUP BY label"


class RogueCoordinator(silo_pb2_grpc.CoordinatorServicer):
    """Hands each connecting site the next list of tasks, as analyst ``mallory``."""

    def __init__(self, plans: list[list[silo_pb2.TaskAssignment]]) -> None:
        self.plans = deque(plans)
        self.done: list[silo_pb2.TaskDone] = []

    async def Connect(  # noqa: N802 (gRPC method name)
        self, request_iterator: AsyncIterator[silo_pb2.SiteMessage],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[silo_pb2.CoordinatorMessage]:
        iterator = request_iterator.__aiter__()
        hello = await asyncio.wait_for(iterator.__anext__(), timeout=30)
        assert hello.WhichOneof("kind") == "hello"
        tasks = self.plans.popleft() if self.plans else []
        reader = asyncio.create_task(self._read(iterator))
        yield silo_pb2.CoordinatorMessage(welcome=silo_pb2.Welcome(site="h1"))
        yield silo_pb2.CoordinatorMessage(mode=silo_pb2.JobMode(
            job_id="rogue", output_threshold_bytes=1 << 20, analyst="mallory"))
        yield silo_pb2.CoordinatorMessage(assign=silo_pb2.Assign(tasks=tasks))
        try:
            while True:  # keep the site connected while the test reads its answers
                await asyncio.sleep(1.0)
                yield silo_pb2.CoordinatorMessage(ping=silo_pb2.Ping(coordinator_time_s=0))
        finally:
            reader.cancel()

    async def _read(self, iterator: AsyncIterator[silo_pb2.SiteMessage]) -> None:
        async for message in iterator:
            if message.WhichOneof("kind") == "done":
                self.done.append(message.done)

    async def wait_for(self, count: int, timeout_s: float = 240.0) -> list[silo_pb2.TaskDone]:
        async with asyncio.timeout(timeout_s):
            while len(self.done) < count:
                await asyncio.sleep(0.05)
        return list(self.done)


def _task(task_id: str, query: str, **params: object) -> silo_pb2.TaskAssignment:
    return silo_pb2.TaskAssignment(task_id=task_id, task="analytics.partial", dataset="demo",
                                   params_json=json.dumps({"query": query, **params}),
                                   job_id="rogue")


def _dp(epsilon: float = 0.5) -> dict[str, object]:
    return {"secure": True, "privacy": {"epsilon": epsilon, "delta": 0.0,
                                        "mechanism": "laplace"}}


def _site_files(folder: Path, budget_epsilon: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["label,v,ssn,city"]
    rows += [f"{i % 5},{(7 * i) % 100},{100000 + i},{'ams' if i % 2 else 'bos'}"
             for i in range(400)]
    rows += [f"1,50,{900 + i},tiny" for i in range(3)]  # a group of three people
    (folder / "data.csv").write_text("\n".join(rows) + "\n")
    (folder / "token").write_text("h1-token\n")
    (folder / "site.yaml").write_text(f"""\
name: h1
accept: [analytics]
sql:
  dataset: demo
  min_group_size: 10
  tables:
    data:
      path: data.csv
      columns: [label, v, city]
      dp_columns: [v]
      bounds: {{v: [0, 100]}}
      domains: {{label: [0, 1, 2, 3, 4]}}
privacy:
  budget_epsilon: {budget_epsilon}
  max_query_epsilon: 1.0
""")
    return folder / "site.yaml"


@contextlib.contextmanager
def _rogue(plans: list[list[silo_pb2.TaskAssignment]], config: Path, sites: int,
           workdir: Path) -> Iterator[tuple[RogueCoordinator, LoopThread]]:
    loop = LoopThread()
    rogue = RogueCoordinator(plans)

    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server()
        silo_pb2_grpc.add_CoordinatorServicer_to_server(rogue, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = loop.run(start())
    procs = []
    try:
        for i in range(sites):
            cmd = fedsys_command("silo", "site", "--config", str(config), "--coordinator",
                                 f"127.0.0.1:{port}", "--token-file",
                                 str(config.parent / "token"), "--insecure", "--workers", "2",
                                 "--tasks", "fedsys.analytics.tasks", module="fedsys.cli")
            procs.append(spawn(cmd, workdir / f"site-{i}.log", cwd=workdir))
        yield rogue, loop
    finally:
        end_all(procs, 0.0, 5.0)
        loop.run(server.stop(0))
        loop.close()


def test_a_rogue_coordinator_gets_refusals_and_only_noisy_answers_and_all_is_audited(
        tmp_path):
    config = _site_files(tmp_path / "h1", budget_epsilon=3.0)
    tasks = [
        _task("exact-on-dp-column", SUM_V),
        _task("hidden-column", "SELECT label, COUNT(ssn) FROM data GROUP BY label"),
        _task("dp-with-own-policy", SUM_V, clamps={"0": [0, 1e9]},
              site_policy={"dp": None, "min_group_size": 0}, **_dp()),
        _task("small-groups", "SELECT city, COUNT(*) AS n FROM data GROUP BY city"),
        _task("greedy", SUM_V, **_dp(epsilon=2.5)),
    ]
    with _rogue([tasks], config, 1, tmp_path) as (rogue, loop):
        done = {d.task_id: d for d in loop.run(rogue.wait_for(len(tasks)), timeout_s=300)}
    assert "differential privacy" in done["exact-on-dp-column"].refused
    assert "exact answer is refused" in done["exact-on-dp-column"].refused
    assert "ssn" in done["hidden-column"].refused and "may not be read" in done[
        "hidden-column"].refused
    assert "largest per task" in done["greedy"].refused
    assert all(not d.payload for d in done.values() if d.refused)

    columns, _, rows = decode_table(done["dp-with-own-policy"].payload)
    assert columns == ["_k0", "_a0_0", "_a0_1"]
    assert [r[0] for r in rows] == [0, 1, 2, 3, 4]  # every declared group, noised
    exact = {label: sum((7 * i) % 100 for i in range(400) if i % 5 == label)
             + (150 if label == 1 else 0) for label in range(5)}
    noisy = {r[0]: r[1] for r in rows}
    assert all(noisy[k] != exact[k] for k in exact)
    assert [r[2] for r in rows] == [1.0] * 5  # a SUM's exact row count is not released

    _, _, groups = decode_table(done["small-groups"].payload)
    assert sorted(g[0] for g in groups) == ["ams", "bos"]  # "tiny" (3 < 10) suppressed

    ledger = json.loads((tmp_path / "h1" / "site_ledger.json").read_text())
    assert [(c["analyst"], c["epsilon"]) for c in ledger["charges"]] == [("mallory", 0.5)]
    audit = {r["task_id"]: r for r in read_audit(tmp_path / "h1" / "site_audit.jsonl")
             if r["decision"] in ("run", "refused")}
    assert audit["exact-on-dp-column"]["decision"] == "refused"
    assert audit["exact-on-dp-column"]["analyst"] == "mallory"
    assert "differential privacy" in audit["exact-on-dp-column"]["reason"]
    assert audit["dp-with-own-policy"]["decision"] == "run"
    assert audit["dp-with-own-policy"]["epsilon"] == 0.5
    assert audit["dp-with-own-policy"]["columns"] == ["label", "v"]
    assert audit["small-groups"]["tables"] == ["data"]


@pytest.mark.parametrize("sites", [2])
def test_six_concurrent_dp_tasks_against_a_budget_for_three_are_answered_three_times(
        tmp_path, sites):
    config = _site_files(tmp_path / "h1", budget_epsilon=1.5)  # 3 tasks of epsilon 0.5
    plans = [[_task(f"dp-{s}-{i}", SUM_V, **_dp()) for i in range(3)] for s in range(sites)]
    with _rogue(plans, config, sites, tmp_path) as (rogue, loop):
        done = loop.run(rogue.wait_for(6), timeout_s=300)
    answered = [d for d in done if not d.refused and not d.error]
    refused = [d for d in done if d.refused]
    assert len(answered) == 3 and len(refused) == 3
    assert all("budget is spent" in d.refused for d in refused)
    ledger = json.loads((tmp_path / "h1" / "site_ledger.json").read_text())
    assert sum(c["epsilon"] for c in ledger["charges"]) == pytest.approx(1.5)

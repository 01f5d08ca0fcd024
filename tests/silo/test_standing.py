"""A standing federation with real site processes: analysts' queries and training jobs,
separate credentials, lost sites, cancellation and fair share.

One federation (2 sample sites, each with a ``visits`` table and a shard of the digits
training data) serves every test of the module; a test that kills a site starts it
again and waits for it to rejoin before it ends.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import yaml

from fedsys.federation import FederationError, JobFailedError
from fedsys.federation.local import demo_config, standing_local
from fedsys.federation.service import FederationSettings
from fedsys.sim.assemble import build_simulator
from fedsys.wire.auth import bearer_metadata, read_token
from fedsys.wire.protos import silo_pb2, silo_pb2_grpc
from tests.silo.conftest import LoopThread, past_round

SITES = 2


@pytest.fixture(scope="module")
def federation(tmp_path_factory) -> Iterator[tuple[Any, Any, Any, LoopThread]]:
    runner = LoopThread()
    workdir = tmp_path_factory.mktemp("standing")
    settings = FederationSettings(site_wait_s=90.0, job_timeout_s=120.0)
    context = standing_local(workdir, sites=SITES, workers=1, insecure=True,
                             settings=settings, training=demo_config(SITES))
    standing, cluster, access = runner.run(context.__aenter__(), timeout_s=240)
    try:
        yield standing, cluster, access, runner
    finally:
        runner.run(context.__aexit__(None, None, None), timeout_s=60)
        runner.close()
        for proc in cluster.processes:
            assert proc.poll() is not None, "a site process outlived its fixture"


def _config_text(**changes: Any) -> str:
    return yaml.safe_dump(demo_config(SITES, **changes).model_dump(mode="json"))


def _long_training() -> str:
    # 600 rounds: on a quiet machine a round takes ~50 ms, 60 could end before a test acts.
    return _config_text(rounds=600, train={"local_steps": 150, "batch_size": 32, "lr": 0.05})


def _wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _rejoin(cluster: Any, standing: Any, index: int) -> None:
    cluster.restart_site(index)
    name = cluster.names[index]
    _wait_for(lambda: any(v.name == name and v.alive and v.rtt_s is not None
                          for v in standing.coordinator.live_sites()), 120, f"{name} to rejoin")


def test_a_query_is_answered_over_every_site(federation):
    _, _, access, _ = federation
    alice = access.client("alice")

    answer = alice.query("SELECT COUNT(*) AS n, MIN(age) AS youngest FROM visits")

    assert answer.columns == ["n", "youngest"]
    assert answer.rows[0][0] == 3000 + 1200  # city_general + childrens
    assert alice.status(answer.job_id).state == "done"
    assert alice.status(answer.job_id).analyst == "alice"


def test_an_analyst_sees_only_its_own_jobs(federation):
    _, _, access, _ = federation
    alice, bob = access.client("alice"), access.client("bob")
    job = alice.submit_query("SELECT COUNT(*) FROM visits")
    alice.wait(job.job_id)

    with pytest.raises(FederationError, match="no job"):
        bob.result(job.job_id)
    with pytest.raises(FederationError, match="no job"):
        bob.cancel(job.job_id)
    others = [j for j in bob.jobs(all_analysts=True) if j.job_id == job.job_id]
    assert others and others[0].summary == ""  # what alice asked stays hers


def test_an_analyst_token_cannot_join_as_a_site(federation):
    _, _, access, runner = federation
    token = read_token(access.analysts["alice"])

    async def connect() -> grpc.StatusCode:
        async with grpc.aio.insecure_channel(access.address) as channel:
            stub = silo_pb2_grpc.CoordinatorStub(channel)

            async def hello() -> Any:
                yield silo_pb2.SiteMessage(hello=silo_pb2.Hello(workers=1, datasets=["x"]))

            call = stub.Connect(hello(), metadata=bearer_metadata(token))
            try:
                async for _ in call:
                    return grpc.StatusCode.OK
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

    assert runner.run(connect(), timeout_s=30) == grpc.StatusCode.UNAUTHENTICATED
    assert "alice" not in {v.name for v in runner.run(_views(federation[0]))}


async def _views(standing: Any) -> list[Any]:
    return list(standing.coordinator.views.values())


def test_a_site_token_cannot_submit_jobs(federation):
    _, cluster, access, _ = federation
    site_token = cluster.workdir / "pki" / "clients" / f"{cluster.names[0]}.token"
    as_site = type(access.client("alice"))(access.address, token_file=site_token,
                                            insecure=True)

    with pytest.raises(FederationError, match="unknown token"):
        as_site.submit_query("SELECT COUNT(*) FROM visits")
    with pytest.raises(FederationError, match="unknown token"):
        as_site.jobs()


def test_a_bad_query_is_refused_before_it_is_queued(federation):
    _, _, access, _ = federation
    alice = access.client("alice")
    before = len(alice.jobs())

    with pytest.raises(FederationError, match="differential privacy"):
        alice.submit_query("SELECT MAX(age) FROM visits", epsilon=1.0)

    assert len(alice.jobs()) == before


def test_training_from_a_run_config_reaches_the_simulators_accuracy(federation, tmp_path):
    _, _, access, _ = federation
    config = demo_config(SITES, rounds=15)
    simulated = build_simulator(config).run().final_accuracy
    bob = access.client("bob")

    job_id = bob.submit(yaml.safe_dump(config.model_dump(mode="json")))
    bob.wait(job_id, timeout_s=300)
    summary = bob.result(job_id)["summary"]
    files = {p.name for p in bob.download(job_id, tmp_path / "run")}

    assert simulated is not None and simulated > 0.8
    assert abs(summary["final_accuracy"] - simulated) <= 0.02
    assert summary["rounds"] == 15
    assert {"rounds.jsonl", "summary.json", "config.yaml", "accuracy_vs_time.png",
            "final_weights.npz"} <= files
    assert len((tmp_path / "run" / "rounds.jsonl").read_text().splitlines()) == 15


def test_a_site_killed_mid_job_rejoins_and_the_job_finishes(federation):
    standing, cluster, access, _ = federation
    alice = access.client("alice")
    # 1,500 steps: rounds of ~0.5 s on a quiet machine, so the kill lands mid-job.
    job_id = alice.submit(_config_text(rounds=12, train={"local_steps": 1500,
                                                         "batch_size": 32, "lr": 0.05}))
    _wait_for(lambda: past_round(alice, job_id, 3), 120, "round 3")

    cluster.kill_site(1)
    time.sleep(1.0)
    _rejoin(cluster, standing, 1)
    info = alice.wait(job_id, timeout_s=300)

    assert info.state == "done"
    logs = "\n".join(alice.logs(job_id))
    assert f"site {cluster.names[1]!r} was lost" in logs
    assert "waiting up to" in logs
    assert alice.result(job_id)["summary"]["rounds"] == 12


def test_a_site_killed_under_the_fail_policy_fails_the_job_naming_it(federation):
    standing, cluster, access, _ = federation
    alice = access.client("alice")
    job_id = alice.submit(_long_training(), on_site_failure="fail")
    _wait_for(lambda: past_round(alice, job_id, 2), 120, "round 2")

    cluster.kill_site(0)
    with pytest.raises(JobFailedError) as failed:
        alice.wait(job_id, timeout_s=120)
    _rejoin(cluster, standing, 0)

    assert failed.value.info.state == "failed"
    assert repr(cluster.names[0]) in failed.value.info.error


def test_cancelling_a_running_job_frees_the_sites_for_the_next(federation):
    standing, _, access, _ = federation
    alice = access.client("alice")
    job_id = alice.submit(_long_training())
    _wait_for(lambda: past_round(alice, job_id, 2), 120, "round 2")

    cancelled = alice.cancel(job_id)
    started = time.monotonic()
    answer = alice.query("SELECT COUNT(*) FROM visits")

    assert cancelled.state == "cancelled"
    assert alice.status(job_id).state == "cancelled"
    assert answer.rows[0][0] == 4200
    assert time.monotonic() - started < 30
    assert not standing.coordinator.busy


def test_another_analysts_queries_run_between_a_long_jobs_rounds(federation):
    standing, _, access, _ = federation
    alice, bob = access.client("alice"), access.client("bob")
    job_id = alice.submit(_long_training())
    _wait_for(lambda: past_round(alice, job_id, 2), 120, "round 2")
    before = len(standing.gate.granted)

    answers = [bob.query("SELECT sex, COUNT(*) FROM visits GROUP BY sex") for _ in range(3)]
    training = alice.status(job_id)
    alice.cancel(job_id)

    assert all(len(a.rows) == 2 for a in answers)
    assert training.state == "running"  # bob did not wait for alice's 600 rounds
    turns = standing.gate.granted[before:]
    assert turns.count("bob") >= 3 and "alice" in turns  # rounds and queries took turns


def test_the_commands_reach_the_standing_coordinator(federation, tmp_path, capsys):
    from fedsys.cli import main

    _, _, access, _ = federation
    remote = ["--coordinator", access.address, "--token-file", str(access.analysts["bob"]),
              "--insecure"]

    assert main(["query", *remote, "--json", "SELECT COUNT(*) AS n FROM visits"]) == 0
    answer = json.loads(capsys.readouterr().out)
    config = tmp_path / "run.yaml"
    config.write_text(_config_text(rounds=2))
    assert main(["submit", str(config), *remote, "--wait", "--out", str(tmp_path / "out"),
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert main(["jobs", "list", *remote, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert main(["jobs", "status", "nonexistent", *remote]) == 1
    error = capsys.readouterr().err

    assert answer["rows"] == [[4200]]
    assert summary["rounds"] == 2
    assert (tmp_path / "out" / "summary.json").exists()
    assert {j["kind"] for j in listed} == {"query", "training"}
    assert all(j["analyst"] == "bob" for j in listed)
    assert "no job 'nonexistent'" in error

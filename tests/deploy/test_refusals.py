"""A misbehaving client against a real server: each misdeed is refused, training goes on."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
import torch

from fedsys.core.weights import ModelWeights
from fedsys.deploy.client import DeployClient, LocalData
from fedsys.wire import auth
from fedsys.wire.protos import deploy_pb2, deploy_pb2_grpc
from fedsys.wire.tensors import specs_of, weights_to_bytes
from fedsys.wire.transport import ChannelSecurity, open_channel
from tests.deploy.harness import provision, rounds_done, write_config


def _no_data(run: dict) -> LocalData:
    raise AssertionError("the adversary never builds data")


async def _next_task(stream) -> deploy_pb2.TrainTask:
    async for instruction in stream:
        if instruction.HasField("train"):
            return instruction.train
    raise AssertionError("stream ended without a task")


def _header(task: deploy_pb2.TrainTask, payload: bytes) -> deploy_pb2.UpdateHeader:
    return deploy_pb2.UpdateHeader(
        task_id=task.task_id,
        round_idx=task.round_idx,
        model_version=task.model_version,
        num_samples=50,
        mean_loss=1.0,
        sum_sq_loss=50.0,
        samples_seen=50,
        codec="none",
        payload_bytes=[len(payload)],
    )


async def _misbehave(port: int, pki) -> dict[str, str]:
    security = ChannelSecurity(ca_path=pki / "ca.pem")
    token = auth.read_token(pki / "clients" / "client-0000.token")
    seen: dict[str, str] = {}
    async with open_channel(f"127.0.0.1:{port}", security) as channel:
        stub = deploy_pb2_grpc.AggregatorStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Register(deploy_pb2.RegisterRequest(), metadata=auth.bearer_metadata("x"))
        seen["wrong token"] = f"{err.value.code().name}: {err.value.details()}"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Register(
                deploy_pb2.RegisterRequest(fedsys_version="v" * (5 << 20)),
                metadata=auth.bearer_metadata(token),
            )
        seen["oversize"] = err.value.code().name

        reply = await stub.Register(
            deploy_pb2.RegisterRequest(), metadata=auth.bearer_metadata(token)
        )
        client = DeployClient(f"127.0.0.1:{port}", token, security, _no_data)
        specs = specs_of(reply.layout)
        zeros = ModelWeights(flat=torch.zeros(sum(s.numel for s in specs)), specs=specs)
        stream = stub.Subscribe(
            deploy_pb2.SubscribeRequest(session_id=reply.session_id, num_samples=50),
            metadata=auth.bearer_metadata(token),
        )
        task = await _next_task(stream)
        nan = weights_to_bytes(zeros.with_flat(torch.full_like(zeros.flat, float("nan"))))
        seen["nan"] = (await client.upload(stub, _header(task, nan), nan))[1]

        task = await _next_task(stream)
        good = weights_to_bytes(zeros)
        accepted, _ = await client.upload(stub, _header(task, good), good)
        seen["honest accepted"] = str(accepted)
        seen["replay"] = (await client.upload(stub, _header(task, good), good))[1]

        task = await _next_task(stream)
        short = good[:-4]
        seen["wrong size"] = (await client.upload(stub, _header(task, short), short))[1]
        stream.cancel()
    return seen


def test_misdeeds_are_refused_with_reasons_while_training_goes_on(tmp_path, processes):
    pki = provision(tmp_path / "pki", 3)
    out = tmp_path / "out"
    config = write_config(
        tmp_path / "run.yaml",
        out,
        pki,
        rounds=5,
        clients_per_round=3,
        dataset={"name": "digits", "num_clients": 3, "partition": {"kind": "iid"}},
        deploy__min_clients=2,
    )
    server, port = processes.server(config, tmp_path / "port")
    processes.client(port, pki, 1)
    processes.client(port, pki, 2)
    seen = asyncio.run(asyncio.wait_for(_misbehave(port, pki), 300))
    assert seen["wrong token"] == "UNAUTHENTICATED: unknown token"
    assert seen["oversize"] == "RESOURCE_EXHAUSTED"
    assert "NaN or infinite" in seen["nan"]
    assert seen["honest accepted"] == "True"
    assert "not assigned to this client (replayed" in seen["replay"]
    assert "an update of this model is" in seen["wrong size"]
    # The adversary is gone: the remaining rounds run with the two honest clients.
    assert server.wait(timeout=300) == 0, processes.log("server")
    records = rounds_done(out)
    assert len(records) == 5
    reasons = [
        (r["round_idx"], u["client_id"], u["reason"])
        for r in records
        for u in r.get("rejected_updates", [])
    ]
    assert reasons[0][:2] == (0, 0) and "NaN" in reasons[0][2]
    assert reasons[1][:2] == (1, 0) and "replayed" in reasons[1][2]
    # Round 0 may start before every honest client is up; it counts all but the NaN.
    assert records[0]["participants"] == records[0]["selected"] - 1 >= 1
    assert records[1]["participants"] == records[1]["selected"]
    assert all(r["participants"] == 2 for r in records[3:])
    log = (out / "server.log").read_text().splitlines()
    refusals = [json.loads(line) for line in log if '"refused' in line]
    assert any("unknown token" in row["msg"] for row in refusals)

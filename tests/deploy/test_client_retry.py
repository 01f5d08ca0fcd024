"""A client's transfer that an overloaded server sheds is retried, not lost with the round."""

from __future__ import annotations

import asyncio

import grpc
import torch
from torch import nn

from fedsys.core.weights import ModelWeights
from fedsys.deploy.client import DeployClient, LocalData
from fedsys.wire.chunks import sha256_hex, split
from fedsys.wire.protos import deploy_pb2, deploy_pb2_grpc
from fedsys.wire.tensors import weights_to_bytes
from fedsys.wire.transport import Backoff, ChannelSecurity, ServerSecurity, bind, make_server


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(3, 2)


class FlakyModelServer(deploy_pb2_grpc.AggregatorServicer):
    """Serves one model version; the first ``failures`` downloads end with ``code``."""

    def __init__(self, data: bytes, failures: int, code: grpc.StatusCode) -> None:
        self.data = data
        self.failures = failures
        self.code = code
        self.calls = 0

    async def GetModel(self, request, context):  # noqa: N802 (gRPC method name)
        self.calls += 1
        if self.calls <= self.failures:
            await context.abort(self.code, "shed under load")
        for chunk in split(self.data, 64, sha256_hex(self.data)):
            yield chunk


def _download(failures: int, code: grpc.StatusCode, attempts: int = 3):
    weights = ModelWeights.from_module(_model())
    data = bytes(weights_to_bytes(weights))
    servicer = FlakyModelServer(data, failures, code)

    async def scenario():
        server = make_server()
        deploy_pb2_grpc.add_AggregatorServicer_to_server(servicer, server)
        port = bind(server, "127.0.0.1", 0, ServerSecurity(insecure=True))
        await server.start()
        try:
            client = DeployClient(
                f"127.0.0.1:{port}",
                "token",
                ChannelSecurity(insecure=True),
                lambda run: LocalData(_model(), torch.zeros(1, 3), torch.zeros(1).long()),
                backoff=Backoff(base_s=0.01, cap_s=0.05),
                transfer_attempts=attempts,
            )
            client.local_ = client.data({})
            task = deploy_pb2.TrainTask(
                model_version=0, model_bytes=len(data), model_sha256=sha256_hex(data)
            )
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = deploy_pb2_grpc.AggregatorStub(channel)
                try:
                    return await client.retrying(
                        "download", lambda: client.download(stub, task)
                    )
                except grpc.aio.AioRpcError as error:
                    return error
        finally:
            await server.stop(None)

    return asyncio.run(scenario()), weights, servicer


def test_a_shed_download_is_retried_and_arrives_intact():
    received, sent, servicer = _download(failures=2, code=grpc.StatusCode.CANCELLED)
    assert servicer.calls == 3
    torch.testing.assert_close(received.flat, sent.flat, rtol=0, atol=0)


def test_retries_stop_after_the_configured_attempts():
    error, _, servicer = _download(failures=5, code=grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert isinstance(error, grpc.aio.AioRpcError)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert servicer.calls == 3


def test_a_permanent_refusal_is_not_retried():
    error, _, servicer = _download(failures=1, code=grpc.StatusCode.FAILED_PRECONDITION)
    assert isinstance(error, grpc.aio.AioRpcError)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert servicer.calls == 1

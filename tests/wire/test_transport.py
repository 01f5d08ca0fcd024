"""Real gRPC servers on loopback: TLS by default, mutual TLS, tokens, revocation, size limits."""

import asyncio
import logging
from pathlib import Path

import grpc
import pytest

from fedsys.wire import auth, tls
from fedsys.wire.protos import deploy_pb2, deploy_pb2_grpc
from fedsys.wire.transport import (
    Backoff,
    ChannelSecurity,
    ServerSecurity,
    bind,
    make_server,
    open_channel,
)


class EchoStatus(deploy_pb2_grpc.AggregatorServicer):
    """Answers Status with the caller's name in ``phase``; every other RPC is unimplemented."""

    def __init__(self, store: auth.TokenStore) -> None:
        self.store = store

    async def Status(self, request, context):  # noqa: N802 (gRPC method name)
        return deploy_pb2.StatusReply(phase=auth.caller_name(self.store, context), rounds=7)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pki")
    tls.provision(root, ["alice", "bob"])
    auth.issue_tokens(root, ["alice", "bob"])
    return root


async def _serve(pki: Path, security: ServerSecurity, max_message_bytes: int = 4 << 20):
    store = auth.TokenStore(pki / auth.TOKENS_FILE)
    server = make_server([auth.TokenAuthInterceptor(store)], max_message_bytes=max_message_bytes)
    deploy_pb2_grpc.add_AggregatorServicer_to_server(EchoStatus(store), server)
    port = bind(server, "127.0.0.1", 0, security)
    await server.start()
    return server, port


async def _status(port: int, security: ChannelSecurity, token: str | None, **kw):
    async with open_channel(f"127.0.0.1:{port}", security) as channel:
        stub = deploy_pb2_grpc.AggregatorStub(channel)
        metadata = auth.bearer_metadata(token) if token else ()
        return await stub.Status(deploy_pb2.StatusRequest(**kw), metadata=metadata, timeout=10)


def test_tls_and_token_identify_the_client(pki):
    async def scenario():
        server, port = await _serve(pki, ServerSecurity(cert_dir=pki))
        try:
            token = auth.read_token(pki / "clients" / "alice.token")
            reply = await _status(port, ChannelSecurity(ca_path=pki / "ca.pem"), token)
            assert reply.phase == "alice"
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await _status(port, ChannelSecurity(ca_path=pki / "ca.pem"), "forged-token")
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "unknown token" in err.value.details()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await _status(port, ChannelSecurity(ca_path=pki / "ca.pem"), None)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        finally:
            await server.stop(None)

    asyncio.run(scenario())


def test_plaintext_client_cannot_talk_to_tls_server(pki):
    async def scenario():
        server, port = await _serve(pki, ServerSecurity(cert_dir=pki))
        try:
            token = auth.read_token(pki / "clients" / "alice.token")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await _status(port, ChannelSecurity(insecure=True), token)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            await server.stop(None)

    asyncio.run(scenario())


def test_tls_is_required_unless_explicitly_off(pki):
    with pytest.raises(ValueError, match="TLS is on by default"):
        ServerSecurity().credentials()
    with pytest.raises(ValueError, match="TLS is on by default"):
        open_channel("127.0.0.1:1", ChannelSecurity())


def test_mutual_tls_refuses_a_client_without_certificate(pki):
    async def scenario():
        server, port = await _serve(pki, ServerSecurity(cert_dir=pki, mutual_tls=True))
        try:
            token = auth.read_token(pki / "clients" / "bob.token")
            with_cert = ChannelSecurity(
                ca_path=pki / "ca.pem",
                cert_path=pki / "clients" / "bob.pem",
                key_path=pki / "clients" / "bob.key",
            )
            assert (await _status(port, with_cert, token)).phase == "bob"
            with pytest.raises(grpc.aio.AioRpcError):
                await _status(port, ChannelSecurity(ca_path=pki / "ca.pem"), token)
        finally:
            await server.stop(None)

    asyncio.run(scenario())


def test_revoked_token_is_refused_and_logged(tmp_path, caplog):
    auth.issue_tokens(tmp_path, ["carol", "dave"])
    store = auth.TokenStore(tmp_path / auth.TOKENS_FILE)
    carol = auth.read_token(tmp_path / "clients" / "carol.token")

    async def scenario():
        server = make_server([auth.TokenAuthInterceptor(store)])
        deploy_pb2_grpc.add_AggregatorServicer_to_server(EchoStatus(store), server)
        port = bind(server, "127.0.0.1", 0, ServerSecurity(insecure=True))
        await server.start()
        try:
            plain = ChannelSecurity(insecure=True)
            assert (await _status(port, plain, carol)).phase == "carol"
            store.revoke("carol")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await _status(port, plain, carol)
            assert "revoked" in err.value.details()
        finally:
            await server.stop(None)

    with caplog.at_level(logging.WARNING, logger="fedsys.wire.auth"):
        asyncio.run(scenario())
    assert any("revoked" in record.message for record in caplog.records)


def test_message_above_the_limit_is_refused(pki):
    async def scenario():
        server, port = await _serve(pki, ServerSecurity(insecure=True), max_message_bytes=1024)
        try:
            token = auth.read_token(pki / "clients" / "alice.token")
            plain = ChannelSecurity(insecure=True)
            async with open_channel(f"127.0.0.1:{port}", plain) as channel:
                stub = deploy_pb2_grpc.AggregatorStub(channel)
                big = deploy_pb2.RegisterRequest(fedsys_version="x" * 4096)
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.Register(big, metadata=auth.bearer_metadata(token), timeout=10)
                assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert (await _status(port, plain, token)).rounds == 7
        finally:
            await server.stop(None)

    asyncio.run(scenario())


def test_backoff_grows_with_jitter_and_gives_up():
    import random

    backoff = Backoff(base_s=1.0, cap_s=8.0, max_attempts=5)
    rng = random.Random(0)
    delays = [backoff.delay_s(n, rng) for n in range(6)]
    for n, delay in enumerate(delays):
        nominal = min(8.0, 2.0**n)
        assert 0.5 * nominal <= delay <= nominal
    assert not backoff.exhausted(4) and backoff.exhausted(5)

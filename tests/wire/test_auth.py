"""One token interceptor: a store for the whole server, or one per service (a role each).

A real gRPC server on loopback serves two services, ``test.Sites`` and
``test.Analysts``; each answers with the caller's name as its own role's store knows it.
``tests/silo/test_roles.py`` reuses :func:`serve` and :func:`call`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from fedsys.wire import auth
from fedsys.wire.transport import ChannelSecurity, ServerSecurity, bind, make_server, open_channel

SITES = "/test.Sites/"
ANALYSTS = "/test.Analysts/"
PLAIN = ChannelSecurity(insecure=True)


@pytest.fixture
def roles(tmp_path: Path) -> dict[str, dict[str, str]]:
    return {
        "site": auth.issue_tokens(tmp_path / "sites", ["hospital-a"]),
        "analyst": auth.issue_tokens(tmp_path / "analysts", ["alice"]),
    }


def stores(tmp_path: Path) -> tuple[auth.TokenStore, auth.TokenStore]:
    return (
        auth.TokenStore(tmp_path / "sites" / auth.TOKENS_FILE),
        auth.TokenStore(tmp_path / "analysts" / auth.TOKENS_FILE),
    )


def _service(prefix: str, store: auth.TokenStore) -> grpc.GenericRpcHandler:
    async def who(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return auth.caller_name(store, context).encode()

    async def hello(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return b"hello"

    handlers = {
        "Who": grpc.unary_unary_rpc_method_handler(who),
        "Hello": grpc.unary_unary_rpc_method_handler(hello),
    }
    return grpc.method_handlers_generic_handler(prefix.strip("/"), handlers)


async def serve(interceptor: auth.TokenAuthInterceptor, tmp_path: Path) -> tuple[object, int]:
    sites, analysts = stores(tmp_path)
    server = make_server([interceptor])
    server.add_generic_rpc_handlers((_service(SITES, sites), _service(ANALYSTS, analysts)))
    port = bind(server, "127.0.0.1", 0, ServerSecurity(insecure=True))
    await server.start()
    return server, port


async def call(port: int, method: str, token: str | None) -> str:
    """The reply, or ``"<CODE>: <details>"`` of a failed call."""
    async with open_channel(f"127.0.0.1:{port}", PLAIN) as channel:
        call = channel.unary_unary(method)
        metadata = auth.bearer_metadata(token) if token else ()
        try:
            return (await call(b"", metadata=metadata, timeout=10)).decode()
        except grpc.aio.AioRpcError as err:
            return f"{err.code().name}: {err.details()}"


def test_each_service_takes_only_the_tokens_of_its_own_role(tmp_path, roles) -> None:
    site, analyst = roles["site"]["hospital-a"], roles["analyst"]["alice"]
    sites, analysts = stores(tmp_path)

    async def scenario() -> list[str]:
        server, port = await serve(
            auth.TokenAuthInterceptor(sites, by_service={ANALYSTS: analysts}), tmp_path
        )
        try:
            return [
                await call(port, SITES + "Who", site),
                await call(port, ANALYSTS + "Who", analyst),
                await call(port, SITES + "Who", analyst),
                await call(port, ANALYSTS + "Who", site),
                await call(port, ANALYSTS + "Who", None),
            ]
        finally:
            await server.stop(None)

    assert asyncio.run(scenario()) == [
        "hospital-a",
        "alice",
        "UNAUTHENTICATED: unknown token",
        "UNAUTHENTICATED: unknown token",
        "UNAUTHENTICATED: no bearer token presented",
    ]


def test_open_methods_need_no_token_and_revocation_applies_at_once(tmp_path, roles) -> None:
    site = roles["site"]["hospital-a"]
    sites, _ = stores(tmp_path)

    async def scenario() -> list[str]:
        interceptor = auth.TokenAuthInterceptor(sites, open_methods=frozenset({SITES + "Hello"}))
        server, port = await serve(interceptor, tmp_path)
        try:
            replies = [
                await call(port, SITES + "Hello", None),
                await call(port, SITES + "Who", site),
            ]
            auth.TokenStore(tmp_path / "sites" / auth.TOKENS_FILE).revoke("hospital-a")
            replies.append(await call(port, SITES + "Who", site))
            return replies
        finally:
            await server.stop(None)

    assert asyncio.run(scenario()) == [
        "hello",
        "hospital-a",
        "UNAUTHENTICATED: token of client 'hospital-a' is revoked",
    ]

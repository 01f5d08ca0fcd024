"""Token files per role: a name may hold one role only, and each service has its own file."""

from __future__ import annotations

import asyncio
import logging

import pytest

from fedsys.silo.roles import RoleAuthInterceptor, check_disjoint
from fedsys.wire.auth import AuthError, TokenStore, issue_tokens
from tests.wire.test_auth import ANALYSTS, SITES, call, serve, stores


def test_one_name_in_two_roles_is_refused(tmp_path):
    issue_tokens(tmp_path / "sites", ["hospital-a", "hospital-b"])
    issue_tokens(tmp_path / "analysts", ["alice", "hospital-b"])

    with pytest.raises(ValueError, match=r"'hospital-b' holds tokens of two roles \(site, an"):
        check_disjoint(
            {
                "site": TokenStore(tmp_path / "sites" / "tokens.json"),
                "analyst": TokenStore(tmp_path / "analysts" / "tokens.json"),
            }
        )


def test_each_service_checks_the_tokens_of_its_own_role(tmp_path):
    sites = issue_tokens(tmp_path / "sites", ["hospital-a"])
    analysts = issue_tokens(tmp_path / "analysts", ["alice"])
    interceptor = RoleAuthInterceptor(
        TokenStore(tmp_path / "sites" / "tokens.json"),
        {"/fedsys.federation.Federation/": TokenStore(tmp_path / "analysts" / "tokens.json")},
    )
    site_store = interceptor.store_for("/fedsys.silo.Coordinator/Connect")
    analyst_store = interceptor.store_for("/fedsys.federation.Federation/SubmitQuery")

    assert site_store.identify(sites["hospital-a"]) == "hospital-a"
    assert analyst_store.identify(analysts["alice"]) == "alice"
    with pytest.raises(AuthError, match="unknown token"):
        site_store.identify(analysts["alice"])
    with pytest.raises(AuthError, match="unknown token"):
        analyst_store.identify(sites["hospital-a"])


def test_a_refusal_names_the_service_and_the_other_roles_token_is_refused(tmp_path, caplog):
    site = issue_tokens(tmp_path / "sites", ["hospital-a"])["hospital-a"]
    analyst = issue_tokens(tmp_path / "analysts", ["alice"])["alice"]
    sites, analysts = stores(tmp_path)

    async def scenario() -> list[str]:
        server, port = await serve(RoleAuthInterceptor(sites, {ANALYSTS: analysts}), tmp_path)
        try:
            return [
                await call(port, SITES + "Who", site),
                await call(port, ANALYSTS + "Who", analyst),
                await call(port, SITES + "Hello", analyst),
                await call(port, ANALYSTS + "Hello", site),
            ]
        finally:
            await server.stop(None)

    with caplog.at_level(logging.WARNING, logger="fedsys.wire.auth"):
        replies = asyncio.run(scenario())

    assert replies == [
        "hospital-a",
        "alice",
        "UNAUTHENTICATED: unknown token (for test.Sites)",
        "UNAUTHENTICATED: unknown token (for test.Analysts)",
    ]
    assert [r.getMessage() for r in caplog.records] == [
        "refused call to /test.Sites/Hello: unknown token",
        "refused call to /test.Analysts/Hello: unknown token",
    ]

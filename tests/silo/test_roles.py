"""Token files per role: a name may hold one role only, and each service has its own file."""

from __future__ import annotations

import pytest

from fedsys.silo.roles import RoleAuthInterceptor, check_disjoint
from fedsys.wire.auth import AuthError, TokenStore, issue_tokens


def test_one_name_in_two_roles_is_refused(tmp_path):
    issue_tokens(tmp_path / "sites", ["hospital-a", "hospital-b"])
    issue_tokens(tmp_path / "analysts", ["alice", "hospital-b"])

    with pytest.raises(ValueError, match=r"'hospital-b' holds tokens of two roles \(site, an"):
        check_disjoint({"site": TokenStore(tmp_path / "sites" / "tokens.json"),
                        "analyst": TokenStore(tmp_path / "analysts" / "tokens.json")})


def test_each_service_checks_the_tokens_of_its_own_role(tmp_path):
    sites = issue_tokens(tmp_path / "sites", ["hospital-a"])
    analysts = issue_tokens(tmp_path / "analysts", ["alice"])
    interceptor = RoleAuthInterceptor(
        TokenStore(tmp_path / "sites" / "tokens.json"),
        {"/fedsys.federation.Federation/": TokenStore(tmp_path / "analysts" / "tokens.json")})
    site_store = interceptor.store_for("/fedsys.silo.Coordinator/Connect")
    analyst_store = interceptor.store_for("/fedsys.federation.Federation/SubmitQuery")

    assert site_store.identify(sites["hospital-a"]) == "hospital-a"
    assert analyst_store.identify(analysts["alice"]) == "alice"
    with pytest.raises(AuthError, match="unknown token"):
        site_store.identify(analysts["alice"])
    with pytest.raises(AuthError, match="unknown token"):
        analyst_store.identify(sites["hospital-a"])

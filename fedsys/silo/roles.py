"""Token checks per role: sites and analysts hold different credentials.

A standing coordinator serves two kinds of callers on one port: sites (the ``Coordinator``
service) and analysts (the ``Federation`` service). Each role has its own token file; a
call is checked against the file of the service it calls, so an analyst's token is
unknown to the site service and a site's token unknown to the analysts' one. A name that
appears in both files is refused at start: one name, one role.
"""

from __future__ import annotations

from collections.abc import Mapping

from fedsys.wire.auth import AuthError, TokenAuthInterceptor, TokenStore

__all__ = ["RoleAuthInterceptor", "check_disjoint"]


def check_disjoint(stores: Mapping[str, TokenStore]) -> None:
    """Refuse two roles sharing a name.

    Raises
    ------
    ValueError
        Naming the shared names and the roles.
    """
    seen: dict[str, str] = {}
    for role, store in stores.items():
        for name in store.names():
            if name in seen:
                raise ValueError(
                    f"{name!r} holds tokens of two roles ({seen[name]}, {role}): "
                    f"give each role its own names and tokens"
                )
            seen[name] = role


class RoleAuthInterceptor(TokenAuthInterceptor):
    """Refuse a call whose token is not one of the role that the called service serves.

    :class:`~fedsys.wire.auth.TokenAuthInterceptor` with a store per service; a refusal
    also names the service the caller was refused by.

    Parameters
    ----------
    default
        The token store of every service not listed in ``by_service`` (the sites).
    by_service
        ``"/package.Service/"`` method prefix -> the token store of its role.
    """

    def __init__(
        self, default: TokenStore, by_service: Mapping[str, TokenStore] | None = None
    ) -> None:
        super().__init__(default, by_service=by_service)

    def refusal(self, method: str, error: AuthError) -> str:
        """The token's fault and the service that refused it (``... (for Coordinator)``)."""
        return f"{error} (for {method.rsplit('/', 2)[-2]})"

"""Token checks per role: sites and analysts hold different credentials.

A standing coordinator serves two kinds of callers on one port: sites (the ``Coordinator``
service) and analysts (the ``Federation`` service). Each role has its own token file; a
call is checked against the file of the service it calls, so an analyst's token is
unknown to the site service and a site's token unknown to the analysts' one. A name that
appears in both files is refused at start: one name, one role.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import grpc

from fedsys.wire.auth import AuthError, TokenStore, deny, token_from_metadata

_LOGGER = logging.getLogger(__name__)

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]]

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
                raise ValueError(f"{name!r} holds tokens of two roles ({seen[name]}, {role}): "
                                 f"give each role its own names and tokens")
            seen[name] = role


class RoleAuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuse a call whose token is not one of the role that the called service serves.

    Parameters
    ----------
    default
        The token store of every service not listed in ``by_service`` (the sites).
    by_service
        ``"/package.Service/"`` method prefix -> the token store of its role.
    """

    def __init__(self, default: TokenStore,
                 by_service: Mapping[str, TokenStore] | None = None) -> None:
        self.default = default
        self.by_service = dict(by_service or {})

    def store_for(self, method: str) -> TokenStore:
        """The token store that calls of ``method`` are checked against."""
        for prefix, store in self.by_service.items():
            if method.startswith(prefix):
                return store
        return self.default

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        token = token_from_metadata(handler_call_details.invocation_metadata)
        try:
            self.store_for(method).identify(token)
        except AuthError as exc:
            _LOGGER.warning("refused call to %s: %s", method, exc)
            return deny(f"{exc} (for {method.rsplit('/', 2)[-2]})")
        return await continuation(handler_call_details)


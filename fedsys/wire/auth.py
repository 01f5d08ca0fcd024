"""Per-client bearer tokens: issued once, stored hashed on the server, checked on every call.

The server keeps only SHA-256 digests of the tokens (``tokens.json``), so a leaked
server file does not let anyone impersonate a client. A token is revoked by setting
``"revoked": true`` on its entry; the store re-reads the file when it changes, so a
revocation takes effect without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from fedsys.metrics.writers import atomic_write_text

AUTH_HEADER = "authorization"
TOKENS_FILE = "tokens.json"
_LOGGER = logging.getLogger(__name__)


class AuthError(PermissionError):
    """A peer presented no token, an unknown one, or a revoked one."""


def new_token() -> str:
    """A fresh 256-bit token from the operating system's CSPRNG."""
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    """Hex SHA-256 of a token, as stored on the server."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenEntry:
    """A client name, the digest of its token and whether it is revoked."""

    name: str
    sha256: str
    revoked: bool = False


def write_tokens(path: Path, entries: Sequence[TokenEntry]) -> None:
    """Write the server's token file atomically."""
    rows = [{"name": e.name, "sha256": e.sha256, "revoked": e.revoked} for e in entries]
    atomic_write_text(path, json.dumps({"clients": rows}, indent=2) + "\n")
    path.chmod(0o600)


def client_name(prefix: str, index: int) -> str:
    """The name ``fedsys certs`` gives client ``index``: its certificate and token file."""
    return f"{prefix}{index:04d}"


def issue_tokens(out_dir: Path, names: Sequence[str]) -> dict[str, str]:
    """Make one token per client name: ``clients/<name>.token`` and the server's ``tokens.json``.

    Returns the tokens by name (the only time they exist in the clear on the server side).
    """
    tokens = {name: new_token() for name in names}
    (out_dir / "clients").mkdir(parents=True, exist_ok=True)
    for name, token in tokens.items():
        token_path = out_dir / "clients" / f"{name}.token"
        token_path.write_text(token + "\n")
        token_path.chmod(0o600)
    write_tokens(out_dir / TOKENS_FILE, [TokenEntry(n, digest(t)) for n, t in tokens.items()])
    return tokens


def read_token(path: Path) -> str:
    """A client's token from its file (whitespace stripped)."""
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise FileNotFoundError(f"cannot read token file {path}: {exc.strerror}") from None
    if not token:
        raise ValueError(f"token file {path} is empty")
    if any(c.isspace() or not c.isprintable() for c in token) or len(token) > 512:
        raise ValueError(f"token file {path} does not hold one token (one short line expected)")
    return token


class TokenStore:
    """The server's view of ``tokens.json``: who may connect.

    Parameters
    ----------
    path
        The token file written by :func:`issue_tokens` / ``fedsys certs``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime_ns = -1
        self._by_digest: dict[str, TokenEntry] = {}

    def _reload(self) -> None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError as exc:
            raise FileNotFoundError(f"cannot read token file {self.path}: {exc.strerror}") from None
        if mtime == self._mtime_ns:
            return
        try:
            rows = json.loads(self.path.read_text())["clients"]
            entries = [
                TokenEntry(r["name"], r["sha256"], bool(r.get("revoked", False))) for r in rows
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"token file {self.path} is malformed: {exc}") from None
        self._by_digest = {entry.sha256: entry for entry in entries}
        self._mtime_ns = mtime

    def identify(self, token: str | None) -> str:
        """The client name a token belongs to.

        Raises
        ------
        AuthError
            If the token is missing, unknown or revoked.
        """
        if not token:
            raise AuthError("no bearer token presented")
        self._reload()
        wanted = digest(token)
        found = None
        for known, entry in self._by_digest.items():
            if hmac.compare_digest(known, wanted):
                found = entry
        if found is None:
            raise AuthError("unknown token")
        if found.revoked:
            raise AuthError(f"token of client {found.name!r} is revoked")
        return found.name

    def names(self) -> list[str]:
        """Every client name in the file, in file order (revoked ones included)."""
        self._reload()
        return [entry.name for entry in self._by_digest.values()]

    def revoke(self, name: str) -> None:
        """Mark ``name``'s token revoked in the file."""
        self._reload()
        entries = [
            TokenEntry(e.name, e.sha256, e.revoked or e.name == name)
            for e in self._by_digest.values()
        ]
        if not any(e.name == name for e in entries):
            raise KeyError(f"no client named {name!r} in {self.path}")
        write_tokens(self.path, entries)


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying ``token``."""
    return ((AUTH_HEADER, f"Bearer {token}"),)


def token_from_metadata(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    """The bearer token in gRPC invocation metadata, if any."""
    for key, value in metadata or ():
        if key == AUTH_HEADER:
            text = value.decode() if isinstance(value, bytes) else str(value)
            scheme, _, token = text.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]]


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuse every call whose bearer token is missing, unknown or revoked, before any handler.

    A refused call ends with ``UNAUTHENTICATED`` and one WARNING log line naming the
    method and the reason. Handlers learn the caller's name with :func:`caller_name`.

    Parameters
    ----------
    store
        The token store calls are checked against (every service not in ``by_service``).
    open_methods
        Full method names (``"/package.Service/Method"``) served without a token.
    by_service
        ``"/package.Service/"`` method prefix -> the token store of the role that service
        serves: one port can serve several roles (sites, analysts), each with its own
        credentials, so a token of one role is unknown to another role's services.
    """

    def __init__(
        self,
        store: TokenStore,
        open_methods: frozenset[str] = frozenset(),
        by_service: Mapping[str, TokenStore] | None = None,
    ) -> None:
        self.store = store
        self.open_methods = open_methods
        self.by_service = dict(by_service or {})

    def store_for(self, method: str) -> TokenStore:
        """The token store that calls of ``method`` are checked against."""
        for prefix, store in self.by_service.items():
            if method.startswith(prefix):
                return store
        return self.store

    def refusal(self, method: str, error: AuthError) -> str:
        """The reason a refused call of ``method`` ends with (the caller sees it)."""
        return str(error)

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        if method in self.open_methods:
            return await continuation(handler_call_details)
        token = token_from_metadata(handler_call_details.invocation_metadata)
        try:
            self.store_for(method).identify(token)
        except AuthError as exc:
            _LOGGER.warning("refused call to %s: %s", method, exc)
            return deny(self.refusal(method, exc))
        return await continuation(handler_call_details)


def caller_name(store: TokenStore, context: grpc.aio.ServicerContext) -> str:
    """Name of the authenticated caller (the interceptor already refused anyone else)."""
    return store.identify(token_from_metadata(context.invocation_metadata()))


def deny(reason: str) -> grpc.RpcMethodHandler:
    """A handler that ends any call ``UNAUTHENTICATED`` with ``reason`` (interceptors)."""

    async def abort(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

    # A unary-unary denial works for every call shape: gRPC ends the call on abort.
    return grpc.unary_unary_rpc_method_handler(abort)

"""gRPC servers and channels as every fedsys runtime opens them: TLS, size limits, keepalive.

The round logic (``deploy/``, ``silo/``) asks for a server or a channel here and never
sets a gRPC option itself, so limits and security are decided in one place.
"""

from __future__ import annotations

import asyncio
import errno
import random
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from fedsys.wire import tls

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""Largest single gRPC message; models and updates above it travel in chunks."""


@dataclass(frozen=True)
class ServerSecurity:
    """How a server proves itself and whom it lets in at the TLS layer.

    Parameters
    ----------
    cert_dir
        Folder made by ``fedsys certs`` (``server.pem``, ``server.key``, ``ca.pem``);
        ``None`` means plaintext, which only ``insecure=True`` allows.
    mutual_tls
        Also require a client certificate signed by the CA.
    insecure
        Explicit opt-out of TLS (tests of the protocol itself, loopback demos).
    """

    cert_dir: Path | None = None
    mutual_tls: bool = False
    insecure: bool = False

    def credentials(self) -> grpc.ServerCredentials | None:
        """Server credentials, or ``None`` for an explicitly insecure server.

        Raises
        ------
        ValueError
            If neither certificates nor ``insecure`` were given.
        """
        if self.cert_dir is not None:
            return tls.server_credentials(self.cert_dir, self.mutual_tls)
        if self.insecure:
            return None
        raise ValueError(
            "TLS is on by default: pass a certificate folder made by 'fedsys certs' "
            "(or opt out explicitly with insecure)"
        )


@dataclass(frozen=True)
class ChannelSecurity:
    """How a client checks the server and, for mutual TLS, proves itself.

    Parameters
    ----------
    ca_path
        The CA certificate that signed the server's; ``None`` only with ``insecure``.
    cert_path, key_path
        The client's certificate and key, for mutual TLS.
    server_name
        Name to check in the server's certificate (default: the host dialled).
    insecure
        Explicit plaintext.
    """

    ca_path: Path | None = None
    cert_path: Path | None = None
    key_path: Path | None = None
    server_name: str | None = None
    insecure: bool = False

    def credentials(self) -> grpc.ChannelCredentials | None:
        """Channel credentials, or ``None`` for an explicitly insecure channel.

        Commands call it at start so that a missing file fails at once, not at the
        first dial.

        Raises
        ------
        ValueError
            If TLS is on but no CA certificate is given.
        FileNotFoundError
            If a certificate or key file cannot be read.
        """
        if self.insecure:
            return None
        if self.ca_path is None:
            raise ValueError(
                "TLS is on by default: pass the CA certificate (--ca) made by 'fedsys certs', "
                "or opt out explicitly with --insecure"
            )
        return tls.channel_credentials(self.ca_path, self.cert_path, self.key_path)


def _options(max_message_bytes: int) -> list[tuple[str, int | str]]:
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 10_000),
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.http2.min_time_between_pings_ms", 5_000),
    ]


def make_server(
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_concurrent_rpcs: int | None = None,
    extra_options: Sequence[tuple[str, int | str]] = (),
) -> grpc.aio.Server:
    """An asyncio gRPC server with the message limit and keepalive every runtime uses.

    ``extra_options`` are further channel arguments; one with the same key as a
    default replaces it (e.g. ``silo/`` raises ``grpc.http2.lookahead_bytes``: a few
    far sites upload large outputs over high-latency paths).
    """
    options = _options(max_message_bytes)
    # Servers keep per-stream flow-control windows small and fixed: with many
    # concurrent uploads, window growth would buffer O(clients x window) bytes.
    options.append(("grpc.http2.bdp_probe", 0))
    # gRPC enables SO_REUSEPORT by default: a second server on the same port would then
    # silently share its connections. A port belongs to one server.
    options.append(("grpc.so_reuseport", 0))
    # Each connection's read buffer grows towards the largest message seen (up to
    # 4 MiB by default) and keeps that size: with many clients sending chunks, that
    # is O(clients x chunk) of idle buffers. Cap it; throughput barely changes.
    options.append(("grpc.experimental.tcp_read_chunk_size", 16 * 1024))
    options.append(("grpc.experimental.tcp_max_read_chunk_size", 64 * 1024))
    # gRPC cancels a call that the server has received but not yet handed to a handler
    # after 30 s. An asyncio server busy with a burst (hundreds of devices asking for
    # the new model at once) can take longer than that to pick every call up; a device
    # that waits is fine, one cancelled for it loses its round.
    options.append(("grpc.server_max_unrequested_time_in_server", 600))
    overridden = {key for key, _ in extra_options}
    options = [item for item in options if item[0] not in overridden] + list(extra_options)
    return grpc.aio.server(
        interceptors=list(interceptors),
        options=options,
        maximum_concurrent_rpcs=max_concurrent_rpcs,
    )


def bind(server: grpc.aio.Server, host: str, port: int, security: ServerSecurity) -> int:
    """Listen on ``host:port`` (0: any free port) and return the port bound.

    Raises
    ------
    OSError
        If the address cannot be bound.
    """
    address = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    credentials = security.credentials()
    try:
        if credentials is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, credentials)
    except RuntimeError:  # gRPC >= 1.60 raises where older versions returned 0
        bound = 0
    if bound == 0:
        raise OSError(bind_failure(host, port))
    return bound


_BIND_REMEDIES = {
    errno.EADDRINUSE: "port {port} is already in use by another process: stop it, or choose "
    "another port (--port; 0 picks a free one)",
    errno.EACCES: "port {port} needs privileges this process lacks: choose a port above 1023 "
    "(--port; 0 picks a free one)",
    errno.EADDRNOTAVAIL: "{host} is not an address of this machine: listen on one of its "
    "addresses (or 0.0.0.0)",
}


def check_bindable(host: str, port: int) -> None:
    """Fail now if ``host:port`` cannot be listened on (a command's check at start).

    A server that builds its model and data before binding would otherwise report a
    port in use only after that; the port may still be taken in between, which
    :func:`bind` then reports the same way.

    Raises
    ------
    OSError
        One line naming the address, the reason and the remedy.
    """
    problem = None if port == 0 else _bind_problem(host, port)
    if problem is not None:
        raise OSError(problem)


def bind_failure(host: str, port: int) -> str:
    """Why ``host:port`` cannot be listened on, and what to do, in one line.

    gRPC only says that binding failed (its reason goes to its own log, which commands
    silence); a plain socket bound to the same address tells which error it was.
    """
    problem = _bind_problem(host, port)
    if problem is not None:
        return problem
    address = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    return f"cannot listen on {address} (gRPC refused the address; it is free now: try again)"


def _bind_problem(host: str, port: int) -> str | None:
    """What a plain socket bound to ``host:port`` runs into, or ``None`` if it binds."""
    address = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"cannot listen on {address}: host {host!r} does not resolve ({exc.strerror})"
    family, kind, proto, _, sockaddr = infos[0]
    try:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds
            probe.bind(sockaddr)
    except OSError as exc:
        remedy = _BIND_REMEDIES.get(exc.errno or 0)
        if remedy is not None:
            return f"cannot listen on {address}: " + remedy.format(host=host, port=port)
        return f"cannot listen on {address}: {exc.strerror or exc}"
    return None


def open_channel(
    address: str,
    security: ChannelSecurity,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    extra_options: Sequence[tuple[str, int | str]] = (),
) -> grpc.aio.Channel:
    """An asyncio channel to ``address`` (``host:port``) with TLS unless ``insecure``.

    ``extra_options`` are further channel arguments (e.g. a silo site's own subchannel
    pool, so that each of its reconnections dials at once).

    Raises
    ------
    ValueError
        If TLS is on but no CA certificate is given.
    """
    options = _options(max_message_bytes) + list(extra_options)
    credentials = security.credentials()
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options)
    if security.server_name:
        options.append(("grpc.ssl_target_name_override", security.server_name))
    return grpc.aio.secure_channel(address, credentials, options=options)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with equal jitter: attempt n waits ``U(0.5, 1) * min(cap, base * 2**n)``.

    Equal jitter (half the nominal wait fixed, half random; see AWS's "Exponential
    Backoff And Jitter") spreads a fleet that lost its server at once over time while
    never retrying sooner than half the nominal wait.

    Parameters
    ----------
    base_s, cap_s
        First and largest nominal wait.
    max_attempts
        Give up after this many failed attempts (``None``: never).
    """

    base_s: float = 0.5
    cap_s: float = 30.0
    max_attempts: int | None = 20

    def delay_s(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        nominal = min(self.cap_s, self.base_s * 2.0 ** min(attempt, 60))
        return nominal * rng.uniform(0.5, 1.0)

    def exhausted(self, attempt: int) -> bool:
        """Whether ``attempt`` failures mean giving up."""
        return self.max_attempts is not None and attempt >= self.max_attempts

    async def sleep(self, attempt: int, rng: random.Random) -> None:
        """Wait before retry ``attempt``."""
        await asyncio.sleep(self.delay_s(attempt, rng))

"""The tests' network-cut proxy (:mod:`tests.netproxy`) against a real echo server.

The network-cut tests trust it to cut and stall for real: a cut resets open connections
and refuses new ones, a stall passes no byte and closes nothing, a restore forwards again.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from tests.netproxy import NetProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def proxy() -> Iterator[NetProxy]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    proxy = NetProxy("127.0.0.1", server.server_address[1])
    try:
        proxy.start()
        yield proxy
    finally:
        proxy.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _dial(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.settimeout(5)
    return sock


def _echo(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    received = b""
    while len(received) < len(data):
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    return received


def test_bytes_pass_untouched(proxy):
    with _dial(proxy.port) as sock:
        assert _echo(sock, b"hello through the proxy") == b"hello through the proxy"
    assert proxy.dialled == 1


def test_a_cut_resets_open_connections_and_refuses_new_ones_until_restored(proxy):
    sock = _dial(proxy.port)
    assert _echo(sock, b"before") == b"before"

    proxy.cut()
    with pytest.raises(OSError):  # reset (or closed): nothing more comes through
        data = _echo(sock, b"during")
        if not data:
            raise ConnectionResetError("closed")
    sock.close()
    with pytest.raises(OSError), _dial(proxy.port) as refused:
        if not _echo(refused, b"during"):
            raise ConnectionResetError("closed")
    proxy.restore()

    with _dial(proxy.port) as again:
        assert _echo(again, b"after") == b"after"
    assert proxy.resets >= 2
    assert proxy.dialled == 2  # the one refused during the cut never reached the target


def test_a_stall_holds_bytes_and_a_restore_delivers_them_in_order(proxy):
    with _dial(proxy.port) as sock:
        assert _echo(sock, b"a") == b"a"
        proxy.stall()
        sock.sendall(b"held")
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(4096)
        assert proxy.open_connections == 1  # nothing was closed

        started = time.monotonic()
        proxy.restore()
        sock.settimeout(5)
        assert sock.recv(4096) == b"held"
        assert time.monotonic() - started < 5

"""A TCP proxy for tests that breaks the network on demand: a cut, a stall, a restore.

A test puts it on one peer's path (site -> proxy -> coordinator) and then:

- :meth:`NetProxy.cut` resets every open connection at once and resets each new one as
  soon as it is accepted, until :meth:`NetProxy.restore` (a link that went down: both
  ends see their connection die, and dialling again fails at once);
- :meth:`NetProxy.stall` lets no byte through in either direction and closes nothing
  (a cable pulled, a firewall dropping packets): the connections stay open, new ones are
  accepted and held, and only timeouts and keepalives can tell. Reading stops, so the
  senders' kernel buffers fill as on a real partition; :meth:`NetProxy.restore` lets the
  held bytes through in order, so a connection that neither end gave up on goes on.

Bytes pass untouched (a byte pipe), so TLS goes through it end to end: the client still
checks the server's certificate, which names ``127.0.0.1`` like the proxy's address.
The proxy runs its own event loop on a daemon thread, so a test driving synchronous
clients (or another loop) calls it directly. Always stop it (a fixture's ``finally:
proxy.close()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

__all__ = ["NetProxy"]

READ_BYTES = 64 * 1024


@dataclass(eq=False)
class _Connection:
    """One client connection and, once dialled, its connection to the target."""

    client: asyncio.StreamWriter
    target: asyncio.StreamWriter | None = None
    task: asyncio.Task[None] | None = None

    def reset(self) -> None:
        """Close both sockets with a TCP RST (no FIN, nothing flushed): a dead link."""
        for writer in (self.client, self.target):
            if writer is None:
                continue
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()


class NetProxy:
    """Forwards ``127.0.0.1:port`` to ``target_host:target_port``; can cut or stall.

    Parameters
    ----------
    target_host, target_port
        Where connections are forwarded.
    listen_host
        Where the proxy listens (on a free port; :attr:`port` once started).

    Attributes
    ----------
    port
        The port it listens on (after :meth:`start`).
    dialled
        Connections forwarded to the target so far (a reconnection adds one).
    resets
        Connections reset by cuts (open ones and those refused during a cut).
    """

    def __init__(self, target_host: str, target_port: int, listen_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.listen_host = listen_host
        self.port = 0
        self.dialled = 0
        self.resets = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._cut = False
        self._flowing: asyncio.Event | None = None

    # ------------------------------------------------------------ test-facing calls

    def start(self) -> int:
        """Listen on a free port; the port."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="netproxy")
        self._thread.start()
        return int(self._call(self._start()))

    def cut(self) -> None:
        """Reset every connection now, and every new one until :meth:`restore`."""
        self._call(self._set(cut=True, flowing=False))

    def stall(self) -> None:
        """Let nothing through and close nothing until :meth:`restore` (a silent cut)."""
        self._call(self._set(cut=False, flowing=False))

    def restore(self) -> None:
        """Forward again: new connections are dialled, held bytes go through."""
        self._call(self._set(cut=False, flowing=True))

    @property
    def open_connections(self) -> int:
        """Client connections the proxy holds now."""
        return len(self._connections)

    def close(self) -> None:
        """Stop listening, reset every connection and end the thread (idempotent)."""
        if self._loop is None or self._thread is None:
            return
        if self._loop.is_running():
            with contextlib.suppress(Exception):
                self._call(self._close())
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()
        self._loop = None
        self._thread = None

    def __enter__(self) -> NetProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ on the proxy's loop

    def _call(self, coro: Coroutine[Any, Any, Any], timeout_s: float = 10.0) -> Any:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the proxy is not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    async def _start(self) -> int:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, self.listen_host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def _set(self, cut: bool, flowing: bool) -> None:
        assert self._flowing is not None
        self._cut = cut
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()
        if cut:
            for connection in list(self._connections):
                self._drop(connection)

    def _drop(self, connection: _Connection) -> None:
        self.resets += 1
        connection.reset()
        if connection.task is not None and connection.task is not asyncio.current_task():
            connection.task.cancel()
        self._connections.discard(connection)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        connection = _Connection(writer, task=asyncio.current_task())
        if self._cut:
            self._drop(connection)
            return
        self._connections.add(connection)
        try:
            await self._flowing.wait()  # a stalled link holds the new connection
            target_reader, connection.target = await asyncio.wait_for(
                asyncio.open_connection(self.target_host, self.target_port), timeout=10
            )
            self.dialled += 1
            pumps = {
                asyncio.ensure_future(self._pump(reader, connection.target)),
                asyncio.ensure_future(self._pump(target_reader, writer)),
            }
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        except (OSError, TimeoutError):
            connection.reset()  # the target is down: the client sees its link die
        except asyncio.CancelledError:
            return  # cut (already reset) or the proxy is closing
        finally:
            if connection in self._connections:
                self._connections.discard(connection)
                for end in (writer, connection.target):
                    if end is not None:
                        end.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction until EOF or an error; nothing passes while stalled."""
        assert self._flowing is not None
        with contextlib.suppress(OSError):
            while True:
                await self._flowing.wait()
                data = await reader.read(READ_BYTES)
                if not data:
                    return
                await self._flowing.wait()  # read just before a stall: held, in order
                writer.write(data)
                await writer.drain()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        connections = list(self._connections)
        for connection in connections:
            self._drop(connection)
        tasks = [c.task for c in connections if c.task is not None]
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=5)

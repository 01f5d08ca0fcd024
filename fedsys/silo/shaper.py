"""A WAN-shaping TCP proxy in user space: one-way delay, jitter and rate per direction.

This kernel has no netem, so the silo engine emulates a far network with a proxy of its
own that sits on a site's path to the coordinator (site -> proxy -> coordinator). Every
byte is delayed, not each connection: data read from one side is cut into small pieces,
each piece is serialised on the direction's link at its rate (shared by all connections
through the proxy, like one WAN path) and then delivered after the one-way delay plus a
jitter draw. Delivery order within a connection is kept (a jitter draw never reorders
bytes). Reading stops while a direction holds more than its buffer, so senders feel
back-pressure as on a real path.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

READ_BYTES = 64 * 1024

MIN_PIECE_BYTES = 4 * 1024
"""Granularity of pacing: a piece leaves the link when all its bytes have been serialised.
Pieces last about ``PIECE_S`` on the link (4 KiB to 64 KiB), so slow links are paced
finely and fast ones do not cost a timer per few kilobytes."""

PIECE_S = 0.001



@dataclass(frozen=True)
class LinkSettings:
    """One direction of an emulated WAN path.

    Parameters
    ----------
    delay_s
        One-way propagation delay (half the RTT for a symmetric path).
    jitter_s
        Extra delay drawn uniformly from ``[0, jitter_s]`` per piece (never reordering).
    rate_bps
        Bandwidth in bits per second; ``None`` for unlimited.
    """

    delay_s: float = 0.0
    jitter_s: float = 0.0
    rate_bps: float | None = None

    def __post_init__(self) -> None:
        if self.delay_s < 0 or self.jitter_s < 0:
            raise ValueError("delay_s and jitter_s must be >= 0")
        if self.rate_bps is not None and self.rate_bps <= 0:
            raise ValueError(f"rate_bps must be > 0 or None, got {self.rate_bps}")

    @classmethod
    def symmetric(
        cls, rtt_s: float, rate_bps: float | None = None, jitter_s: float = 0.0
    ) -> LinkSettings:
        """Settings of each direction of a path with round-trip time ``rtt_s``."""
        return cls(delay_s=rtt_s / 2, jitter_s=jitter_s, rate_bps=rate_bps)

    def piece_bytes(self) -> int:
        """Bytes per paced piece: about a millisecond of the link, 4 KiB to 64 KiB."""
        if self.rate_bps is None:
            return READ_BYTES
        return int(min(READ_BYTES, max(MIN_PIECE_BYTES, self.rate_bps / 8 * PIECE_S)))

    def buffer_bytes(self) -> int:
        """Bytes a direction may hold before it stops reading (about two path BDPs)."""
        if self.rate_bps is None:
            return 8 * 1024 * 1024
        bdp = self.rate_bps / 8 * (self.delay_s + self.jitter_s + 0.05)
        return max(256 * 1024, int(2 * bdp))


class Link:
    """The serialisation state of one direction, shared by every connection through it.

    Parameters
    ----------
    settings
        Delay, jitter and rate; may be replaced at any time (takes effect for new bytes).
    seed
        Seed of the jitter draws.
    """

    def __init__(self, settings: LinkSettings, seed: int | None = None) -> None:
        self.settings = settings
        self._rng = random.Random(seed)
        self._busy_until = 0.0
        self.bytes_carried = 0

    def schedule(self, num_bytes: int, now: float) -> float:
        """When a piece of ``num_bytes`` read at ``now`` reaches the far side."""
        settings = self.settings
        start = max(now, self._busy_until)
        done = start + (num_bytes * 8 / settings.rate_bps if settings.rate_bps else 0.0)
        self._busy_until = done
        self.bytes_carried += num_bytes
        jitter = self._rng.uniform(0.0, settings.jitter_s) if settings.jitter_s else 0.0
        return done + settings.delay_s + jitter


@dataclass
class _Pipe:
    """In-flight pieces of one direction of one connection."""

    link: Link
    queue: asyncio.Queue[tuple[float, bytes] | None] = field(default_factory=asyncio.Queue)
    queued_bytes: int = 0
    last_delivery: float = 0.0
    drained: asyncio.Event = field(default_factory=asyncio.Event)


async def _read_side(reader: asyncio.StreamReader, pipe: _Pipe) -> None:
    loop = asyncio.get_running_loop()
    try:
        while data := await reader.read(READ_BYTES):
            step = pipe.link.settings.piece_bytes()
            for offset in range(0, len(data), step):
                piece = data[offset : offset + step]
                at = max(pipe.link.schedule(len(piece), loop.time()), pipe.last_delivery)
                pipe.last_delivery = at
                pipe.queued_bytes += len(piece)
                pipe.queue.put_nowait((at, piece))
            while pipe.queued_bytes > pipe.link.settings.buffer_bytes():
                pipe.drained.clear()
                await pipe.drained.wait()
    except (ConnectionError, OSError):
        pass
    finally:
        pipe.queue.put_nowait(None)


async def _write_side(writer: asyncio.StreamWriter, pipe: _Pipe) -> None:
    loop = asyncio.get_running_loop()
    try:
        while (item := await pipe.queue.get()) is not None:
            at, piece = item
            wait_s = at - loop.time()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            writer.write(piece)
            pipe.queued_bytes -= len(piece)
            pipe.drained.set()
            if writer.transport.get_write_buffer_size() > READ_BYTES:
                await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


class ShaperProxy:
    """A TCP proxy that forwards to ``target`` through an emulated WAN path.

    Parameters
    ----------
    target_host, target_port
        Where connections are forwarded (the coordinator).
    up, down
        Settings of the client-to-target and target-to-client directions.
    listen_host, listen_port
        Where the proxy listens (port 0: any free port; see :attr:`port` after start).
    seed
        Seed of the jitter draws.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        up: LinkSettings | None = None,
        down: LinkSettings | None = None,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        seed: int | None = None,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.up = Link(up or LinkSettings(), seed=seed)
        self.down = Link(down or LinkSettings(), seed=None if seed is None else seed + 1)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def set_settings(self, up: LinkSettings, down: LinkSettings) -> None:
        """Change both directions (bytes read from now on see the new settings)."""
        self.up.settings = up
        self.down.settings = down

    async def start(self) -> int:
        """Listen and return the port bound."""
        self._server = await asyncio.start_server(
            self._handle, self.listen_host, self.listen_port
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def _handle(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            target_reader, target_writer = await asyncio.wait_for(
                asyncio.open_connection(self.target_host, self.target_port), timeout=10
            )
        except (OSError, TimeoutError):
            client_writer.close()
            return
        up, down = _Pipe(self.up), _Pipe(self.down)
        pumps = [
            _read_side(client_reader, up),
            _write_side(target_writer, up),
            _read_side(target_reader, down),
            _write_side(client_writer, down),
        ]
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)  # type: ignore[arg-type]
        try:
            await asyncio.gather(*pumps)
        except asyncio.CancelledError:
            pass  # the proxy is closing: the connection simply ends
        finally:
            for writer in (client_writer, target_writer):
                writer.close()
            if task is not None:
                self._tasks.discard(task)  # type: ignore[arg-type]

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class ShaperThread:
    """Runs shaping proxies on an event loop of their own, in a daemon thread.

    Lets synchronous code (tests, benchmarks, the ``silo local`` command) put a WAN in
    front of a coordinator and change its settings between runs.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.proxies: list[ShaperProxy] = []

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=loop.run_forever, daemon=True, name="shaper")
            self._thread.start()
            self._loop = loop
        return self._loop

    def _call(self, coro: Coroutine[Any, Any, Any], timeout_s: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._ensure_loop()).result(timeout_s)

    def add(self, proxy: ShaperProxy) -> int:
        """Start ``proxy`` on the thread's loop; return its port."""
        self.proxies.append(proxy)
        return int(self._call(proxy.start()))

    def add_proxy(self, host: str, port: int, up: LinkSettings, down: LinkSettings,
                  seed: int | None = None) -> int:
        """Start a proxy to ``host:port``; return its port."""
        return self.add(ShaperProxy(host, port, up, down, seed=seed))

    def set_all(self, up: LinkSettings, down: LinkSettings) -> None:
        """Give every proxy the same settings."""
        loop = self._ensure_loop()
        for proxy in self.proxies:
            loop.call_soon_threadsafe(proxy.set_settings, up, down)

    def run(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the proxies' loop (thread-safe)."""
        self._ensure_loop().call_soon_threadsafe(fn)

    def close(self) -> None:
        """Close every proxy and stop the thread."""
        if self._loop is None:
            return
        for proxy in self.proxies:
            with contextlib.suppress(Exception):
                self._call(proxy.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._loop = None

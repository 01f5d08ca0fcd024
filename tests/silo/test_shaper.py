"""The WAN shaper delays and limits real TCP traffic within 10 % of its settings."""

import asyncio
import time

import numpy as np
import pytest

from fedsys.silo.shaper import Link, LinkSettings, ShaperProxy

pytestmark = pytest.mark.timing


async def _sink_server(arrivals: list[tuple[float, int]]) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            arrivals.append((time.perf_counter(), len(data)))
            writer.write(b"k" * len(data))  # echo as many bytes back
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_one_way_delay_each_direction_within_10_percent():
    async def scenario():
        arrivals: list[tuple[float, int]] = []
        server, port = await _sink_server(arrivals)
        proxy = ShaperProxy(
            "127.0.0.1", port, up=LinkSettings(delay_s=0.06), down=LinkSettings(delay_s=0.03)
        )
        proxy_port = await proxy.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        ups, rtts = [], []
        try:
            for _ in range(5):
                sent = time.perf_counter()
                writer.write(b"x" * 100)
                await writer.drain()
                await asyncio.wait_for(reader.readexactly(100), timeout=5)
                back = time.perf_counter()
                ups.append(arrivals[-1][0] - sent)
                rtts.append(back - sent)
        finally:
            writer.close()
            await proxy.close()
            server.close()
        return ups, rtts

    ups, rtts = asyncio.run(scenario())
    assert min(ups) >= 0.06
    assert sorted(ups)[2] == pytest.approx(0.06, rel=0.10)
    downs = [r - u for r, u in zip(rtts, ups, strict=True)]
    assert sorted(downs)[2] == pytest.approx(0.03, rel=0.10)


def test_rate_limit_within_10_percent_and_shared_by_connections():
    async def scenario():
        arrivals: list[tuple[float, int]] = []
        server, port = await _sink_server(arrivals)
        rate_bps = 8e6  # 1 MB/s
        proxy = ShaperProxy("127.0.0.1", port, up=LinkSettings(delay_s=0.01, rate_bps=rate_bps))
        proxy_port = await proxy.start()
        conns = [await asyncio.open_connection("127.0.0.1", proxy_port) for _ in range(2)]
        payload = b"y" * 400_000
        start = time.perf_counter()
        try:
            for _, writer in conns:
                writer.write(payload)
            await asyncio.gather(*(w.drain() for _, w in conns))
            for reader, _ in conns:
                await asyncio.wait_for(reader.readexactly(len(payload)), timeout=10)
        finally:
            for _, writer in conns:
                writer.close()
            await proxy.close()
            server.close()
        received = sum(n for _, n in arrivals)
        return received, arrivals[-1][0] - start

    received, elapsed_s = asyncio.run(scenario())
    assert received == 800_000
    # 800 kB at 1 MB/s through one shared link: 0.8 s (+10 ms delay).
    assert elapsed_s == pytest.approx(0.81, rel=0.10)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="rate_bps"):
        LinkSettings(rate_bps=0)
    with pytest.raises(ValueError, match="delay_s"):
        LinkSettings(delay_s=-1)


def test_jitter_stays_within_its_bound_and_the_rate_serialises_pieces():
    link = Link(LinkSettings(delay_s=0.05, jitter_s=0.02, rate_bps=8e6), seed=3)
    arrivals = [link.schedule(1000, now=0.0) for _ in range(200)]
    # piece k leaves the link after k+1 serialisation times (1 ms each at 1 MB/s)
    extra = [at - 0.001 * (k + 1) - 0.05 for k, at in enumerate(arrivals)]
    assert min(extra) >= 0.0 and max(extra) <= 0.02
    assert np.std(extra) > 0.004  # uniform on [0, 20 ms]: about 5.8 ms

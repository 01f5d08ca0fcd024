"""The reconnecting client loop against real gRPC servers on loopback."""

import asyncio
import itertools
import logging
import random
import socket
import time

import pytest

from fedsys.wire.protos import deploy_pb2, deploy_pb2_grpc
from fedsys.wire.reconnect import keep_connected
from fedsys.wire.transport import Backoff, ChannelSecurity, ServerSecurity, bind, make_server
from fedsys.wire.transport import open_channel as dial


class Status(deploy_pb2_grpc.AggregatorServicer):
    async def Status(self, request, context):  # noqa: N802 (gRPC method name)
        return deploy_pb2.StatusReply(phase="up", rounds=3)


def _refusing_port() -> socket.socket:
    """A bound, never listening socket: dialling its port is refused until it closes."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def _session(port: int, attempts: list[float]):
    async def session(connected):
        attempts.append(time.monotonic())
        async with dial(f"127.0.0.1:{port}", ChannelSecurity(insecure=True)) as channel:
            reply = await deploy_pb2_grpc.AggregatorStub(channel).Status(
                deploy_pb2.StatusRequest(), timeout=5
            )
            connected()
            return reply.phase

    return session


class _Records(logging.Handler):
    """Collects records on the logger itself: another test's ``setup_logging`` may have
    stopped fedsys's loggers from propagating to pytest's capture."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_retries_with_backoff_until_a_late_server_starts():
    sock = _refusing_port()
    port = sock.getsockname()[1]
    attempts: list[float] = []
    backoff = Backoff(base_s=0.1, cap_s=0.4, max_attempts=60)

    async def scenario():
        async def start_late():
            await asyncio.sleep(1.5)
            sock.close()
            server = make_server()
            deploy_pb2_grpc.add_AggregatorServicer_to_server(Status(), server)
            bind(server, "127.0.0.1", port, ServerSecurity(insecure=True))
            await server.start()
            return server

        starter = asyncio.create_task(start_late())
        try:
            return await keep_connected(
                _session(port, attempts), backoff=backoff, rng=random.Random(0),
                target=f"127.0.0.1:{port}",
            )
        finally:
            server = await starter
            await server.stop(grace=None)

    logger = logging.getLogger("fedsys.wire.reconnect")
    collected = _Records()
    logger.addHandler(collected)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        assert asyncio.run(scenario()) == "up"
    finally:
        logger.removeHandler(collected)
        logger.setLevel(level)
    assert len(attempts) >= 3
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    for n, gap in enumerate(gaps):  # each wait at least half its nominal delay
        assert gap >= 0.5 * min(0.4, 0.1 * 2**n) - 0.01
    retries = [r for r in collected.records if r.getMessage() == "reconnecting"]
    assert len(retries) == len(attempts) - 1
    assert retries[0].reason.startswith("UNAVAILABLE")
    assert [r.attempt for r in retries] == list(range(1, len(retries) + 1))


def test_gives_up_after_the_backoffs_attempts_with_one_line():
    sock = _refusing_port()
    port = sock.getsockname()[1]
    attempts: list[float] = []
    try:
        with pytest.raises(ConnectionError, match=r"gave up on .* after 3 attempts \(UNAVAILABLE"):
            asyncio.run(keep_connected(
                _session(port, attempts), backoff=Backoff(0.01, 0.02, max_attempts=3),
                rng=random.Random(0), target=f"127.0.0.1:{port}",
            ))
    finally:
        sock.close()
    assert len(attempts) == 4


def test_a_fatal_failure_is_raised_at_once_and_others_propagate():
    calls = []

    async def refused(connected):
        calls.append(1)
        raise ConnectionError("token revoked")

    def fatal(exc):
        return PermissionError(f"refused: {exc}")

    with pytest.raises(PermissionError, match="refused: token revoked"):
        asyncio.run(keep_connected(refused, backoff=Backoff(), rng=random.Random(0),
                                   target="x", fatal=fatal))
    assert calls == [1]

    async def broken(connected):
        raise KeyError("a bug, not a link")

    with pytest.raises(KeyError):
        asyncio.run(keep_connected(broken, backoff=Backoff(), rng=random.Random(0), target="x"))


def test_connected_resets_the_count_and_stop_ends_a_wait_at_once():
    calls = []

    async def flaky(connected):
        calls.append(1)
        if len(calls) % 2 == 0:
            connected()  # got through, then the link broke
        if len(calls) == 7:
            return "done"
        raise ConnectionError("link lost")

    # Three consecutive failures would give up; every other attempt gets through.
    result = asyncio.run(keep_connected(flaky, backoff=Backoff(0.001, 0.002, max_attempts=2),
                                        rng=random.Random(0), target="x"))
    assert result == "done" and len(calls) == 7

    async def stopped():
        stop = asyncio.Event()

        async def never(connected):
            stop.set()
            raise ConnectionError("down")

        started = time.monotonic()
        result = await keep_connected(never, backoff=Backoff(30.0, 60.0), rng=random.Random(0),
                                      target="x", stop=stop)
        return result, time.monotonic() - started

    result, elapsed = asyncio.run(stopped())
    assert result is None and elapsed < 2

"""What one client connection costs a gRPC aio server, with no fedsys round logic at all.

``deploy_load.py`` finds the aggregator's memory growing by a few hundred KiB per
client whatever the model size. This isolates the transport: a bare ``grpc.aio``
server (made by ``fedsys.wire.transport.make_server``, the deployment's options) and
N clients, each holding one server stream open, then downloading and uploading a
payload in 64 KiB chunks (uploads two at a time, as the aggregator grants them).
The server's resident memory is read after the connections open, after all
transfers, and after returning free heap pages (``malloc_trim``), with TLS and in
plaintext, so the share of TLS connection state is measured, not guessed.

Run: ``python benchmarks/grpc_tls_floor.py [--clients 100] [--payload-mib 4]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
CHUNK = 64 * 1024


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def serve(port_file: str, cert_dir: str, payload_bytes: int) -> None:
    """Server process: Subscribe holds a stream, GetModel sends, Upload receives."""
    from fedsys.deploy.memory import return_free_memory
    from fedsys.wire.protos import common_pb2, deploy_pb2, deploy_pb2_grpc
    from fedsys.wire.transport import ServerSecurity, bind, make_server

    chunk = os.urandom(CHUNK)
    uploads = asyncio.Semaphore(2)

    class Bare(deploy_pb2_grpc.AggregatorServicer):
        async def Subscribe(self, request, context):  # noqa: N802
            while True:
                await asyncio.sleep(30)
                yield deploy_pb2.Instruction()

        async def GetModel(self, request, context):  # noqa: N802
            for index in range(payload_bytes // CHUNK):
                yield common_pb2.Chunk(data=chunk, offset=index * CHUNK)

        async def Upload(self, messages, context):  # noqa: N802
            async with uploads:
                yield deploy_pb2.UploadReply(grant=deploy_pb2.Grant(max_chunk_bytes=CHUNK))
                async for _ in messages:
                    pass
            yield deploy_pb2.UploadReply()

    signal.signal(signal.SIGUSR1, lambda *_: return_free_memory())

    async def main() -> None:
        server = make_server(max_message_bytes=2 * CHUNK)
        deploy_pb2_grpc.add_AggregatorServicer_to_server(Bare(), server)
        security = ServerSecurity(cert_dir=Path(cert_dir)) if cert_dir else None
        port = bind(server, "127.0.0.1", 0, security or ServerSecurity(insecure=True))
        await server.start()
        Path(port_file).write_text(str(port))
        await server.wait_for_termination()

    asyncio.run(main())


def clients(port: int, count: int, cert_dir: str, payload_bytes: int, phase_file: str) -> None:
    """Client process: ``count`` channels; writes phases to ``phase_file``."""
    from fedsys.wire.protos import common_pb2, deploy_pb2, deploy_pb2_grpc
    from fedsys.wire.transport import ChannelSecurity, open_channel

    security = (
        ChannelSecurity(ca_path=Path(cert_dir) / "ca.pem")
        if cert_dir
        else ChannelSecurity(insecure=True)
    )
    chunk = os.urandom(CHUNK)
    connected, transferred = asyncio.Event(), asyncio.Event()
    counts = {"connected": 0, "transferred": 0}

    def mark(phase: str, event: asyncio.Event) -> None:
        counts[phase] += 1
        if counts[phase] == count:
            Path(phase_file).write_text(phase)
            event.set()

    async def one(go: asyncio.Event) -> None:
        async with open_channel(f"127.0.0.1:{port}", security, 2 * CHUNK) as channel:
            stub = deploy_pb2_grpc.AggregatorStub(channel)
            stream = stub.Subscribe(deploy_pb2.SubscribeRequest())
            await channel.channel_ready()
            mark("connected", connected)
            await go.wait()
            async for _ in stub.GetModel(deploy_pb2.ModelRequest()):
                pass
            call = stub.Upload()
            await call.write(deploy_pb2.UploadMessage(header=deploy_pb2.UpdateHeader()))
            await call.read()  # the grant
            for index in range(payload_bytes // CHUNK):
                message = common_pb2.Chunk(data=chunk, offset=index * CHUNK)
                await call.write(deploy_pb2.UploadMessage(chunk=message))
            await call.done_writing()
            await call.read()
            mark("transferred", transferred)
            async for _ in stream:
                pass

    async def main() -> None:
        go = asyncio.Event()
        tasks = [asyncio.create_task(one(go)) for _ in range(count)]
        await connected.wait()
        while Path(phase_file).read_text() != "go":
            await asyncio.sleep(0.1)
        go.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())


def _wait_phase(path: Path, phase: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not (path.is_file() and path.read_text() == phase):
        if time.monotonic() > deadline:
            raise TimeoutError(f"clients did not reach {phase!r} in {timeout_s:.0f} s")
        time.sleep(0.2)


def measure(count: int, payload_bytes: int, cert_dir: str, root: Path) -> dict:
    tag = "tls" if cert_dir else "plain"
    port_file, phase_file = root / f"port-{tag}", root / f"phase-{tag}"
    me = [sys.executable, __file__]
    server = subprocess.Popen([*me, "serve", str(port_file), cert_dir, str(payload_bytes)])
    client = None
    try:
        _wait_phase_any(port_file, server)
        time.sleep(1.0)
        idle = _rss_mib(server.pid)
        client = subprocess.Popen(
            [
                *me,
                "clients",
                port_file.read_text(),
                str(count),
                cert_dir,
                str(payload_bytes),
                str(phase_file),
            ]
        )
        _wait_phase(phase_file, "connected", 300)
        time.sleep(1.0)
        connected = _rss_mib(server.pid)
        phase_file.write_text("go")
        _wait_phase(phase_file, "transferred", 600)
        time.sleep(1.0)
        after = _rss_mib(server.pid)
        server.send_signal(signal.SIGUSR1)
        time.sleep(1.0)
        trimmed = _rss_mib(server.pid)
    finally:
        for proc in (client, server):
            if proc is not None:
                proc.kill()
                proc.wait()
    kib = 1024 / count
    return {
        "transport": tag,
        "clients": count,
        "idle_kib_per_client": (connected - idle) * kib,
        "after_kib_per_client": (after - idle) * kib,
        "trimmed_kib_per_client": (trimmed - idle) * kib,
    }


def _wait_phase_any(port_file: Path, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not (port_file.is_file() and port_file.read_text()):
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("bare server did not start")
        time.sleep(0.1)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "clients":
        clients(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), sys.argv[6])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--payload-mib", type=int, default=4)
    args = parser.parse_args()
    from fedsys.wire import tls

    payload = args.payload_mib * 2**20
    with tempfile.TemporaryDirectory(prefix="grpc_floor_") as tmp:
        root = Path(tmp)
        tls.provision(root / "pki", ["client"])
        rows = [measure(args.clients, payload, cert, root) for cert in ("", str(root / "pki"))]
    print(
        f"grpc_tls_floor: bare grpc.aio server, {args.clients} clients, each downloads and "
        f"uploads {args.payload_mib} MiB in 64 KiB chunks (uploads 2 at a time); server "
        "memory per client above the empty server"
    )
    header = (
        f"{'transport':>9} {'connected KiB':>13} {'after transfers KiB':>19} {'after trim KiB':>14}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['transport']:>9} {row['idle_kib_per_client']:>13.0f} "
            f"{row['after_kib_per_client']:>19.0f} {row['trimmed_kib_per_client']:>14.0f}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "grpc_tls_floor.json").write_text(json.dumps(rows, indent=2))
    plain, secure = rows
    print(
        f"ratio: {secure['trimmed_kib_per_client'] / max(plain['trimmed_kib_per_client'], 1):.2f}"
    )


if __name__ == "__main__":
    main()

"""Hand-written gRPC clients with valid credentials that misbehave on the wire.

A :class:`RogueClient` registers and subscribes like a real client, takes its round's
task and starts the upload it was granted, then stalls: it goes silent after a few
chunks (a phone losing signal, a process stopped mid-upload) or trickles one chunk
every few seconds. It runs on an event loop of its own in a thread of the test, so the
test keeps polling the server's run folder meanwhile.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from fedsys import __version__
from fedsys.wire import auth
from fedsys.wire.chunks import sha256_hex, split
from fedsys.wire.protos import deploy_pb2, deploy_pb2_grpc
from fedsys.wire.transport import ChannelSecurity, open_channel
from tests.deploy.harness import Processes, wait_for


@dataclass
class RogueClient:
    """One misbehaving uploader.

    Parameters
    ----------
    chunks_then_silence
        Chunks sent before going silent (``None``: never silent).
    gap_s
        Pause after each chunk (a slow sender).
    vanish
        Lose the link as soon as a task arrives, before any upload (its channel closes).
    stall_download
        Read the first chunk of the task's model, then stop reading (the stream open).
    vanish_after_download
        Download the task's whole model, then lose the link (a device that went
        offline while training).
    hang
        Take the task and do nothing with it, the link kept alive (a hung device).
    from_round
        Rounds before this one get a prompt, complete upload (a well-behaved client).
    """

    address: str
    pki: Path
    name: str
    chunks_then_silence: int | None = None
    gap_s: float = 0.0
    vanish: bool = False
    hang: bool = False
    stall_download: bool = False
    vanish_after_download: bool = False
    session_ended: threading.Event = field(default_factory=threading.Event)
    from_round: int = 0
    got_task: threading.Event = field(default_factory=threading.Event)
    verdict: tuple[bool, str] | None = None
    error: str | None = None
    chunks_sent: int = 0
    registered: threading.Event = field(default_factory=threading.Event)
    _stop: asyncio.Event | None = None

    async def run(self) -> None:
        self._stop = asyncio.Event()
        metadata = auth.bearer_metadata(
            auth.read_token(self.pki / "clients" / f"{self.name}.token")
        )
        security = ChannelSecurity(ca_path=self.pki / "ca.pem")
        try:
            async with open_channel(self.address, security) as channel:
                stub = deploy_pb2_grpc.AggregatorStub(channel)
                reply = await stub.Register(
                    deploy_pb2.RegisterRequest(fedsys_version=__version__),
                    metadata=metadata,
                    timeout=30,
                )
                instructions = stub.Subscribe(
                    deploy_pb2.SubscribeRequest(session_id=reply.session_id, num_samples=100),
                    metadata=metadata,
                )
                self.registered.set()
                async for instruction in instructions:
                    if not instruction.HasField("train"):
                        continue
                    task = instruction.train
                    if task.round_idx < self.from_round:
                        await self._upload(stub, metadata, task, behave=True)
                        continue
                    self.got_task.set()
                    if self.vanish:
                        return  # the channel closes: the link is lost mid-task
                    if self.hang:
                        continue  # keeps reading instructions, never uploads
                    if self.vanish_after_download:
                        await self._download(stub, metadata, task)
                        return
                    if self.stall_download:
                        await self._stall_download(stub, metadata, task)
                        return
                    await self._upload(stub, metadata, task)
                    return
        except grpc.aio.AioRpcError as error:
            self.error = f"{error.code().name}: {error.details()}"
        finally:
            self.session_ended.set()

    async def _download(self, stub, metadata, task: deploy_pb2.TrainTask) -> None:
        call = stub.GetModel(
            deploy_pb2.ModelRequest(model_version=task.model_version),
            metadata=metadata,
            timeout=60,
        )
        async for _ in call:
            pass

    async def _stall_download(self, stub, metadata, task: deploy_pb2.TrainTask) -> None:
        call = stub.GetModel(
            deploy_pb2.ModelRequest(model_version=task.model_version),
            metadata=metadata,
            timeout=300,
        )
        await call.read()
        self.chunks_sent = 1  # here: chunks read
        try:
            assert self._stop is not None
            await self._stop.wait()  # reads nothing more: the server's writes back up
        finally:
            call.cancel()

    async def _upload(
        self, stub, metadata, task: deploy_pb2.TrainTask, behave: bool = False
    ) -> None:
        payload = bytes(int(task.expected_update_bytes))  # a zero delta of the right size
        header = deploy_pb2.UpdateHeader(
            task_id=task.task_id,
            round_idx=task.round_idx,
            model_version=task.model_version,
            num_samples=100,
            mean_loss=1.0,
            sum_sq_loss=100.0,
            samples_seen=100,
            codec=task.codec,
            payload_bytes=[len(payload)],
            sha256=sha256_hex(payload),
        )
        call = stub.Upload(metadata=metadata, timeout=300)
        await call.write(deploy_pb2.UploadMessage(header=header))
        grant = await call.read()
        if grant is grpc.aio.EOF or grant.HasField("verdict"):
            self.error = "no grant"
            return
        chunk_bytes = int(grant.grant.max_chunk_bytes)
        try:
            for index, chunk in enumerate(split(payload, chunk_bytes, header.sha256)):
                silent = self.chunks_then_silence is not None and not behave
                if silent and index >= self.chunks_then_silence:
                    assert self._stop is not None
                    await self._stop.wait()  # silent, the stream left open
                    return
                await call.write(deploy_pb2.UploadMessage(chunk=chunk))
                if not behave:
                    self.chunks_sent += 1
                    await asyncio.sleep(self.gap_s)
            await call.done_writing()
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
            pass  # the server ended the call: its verdict is read below
        reply = await call.read()
        if reply is not grpc.aio.EOF and reply.HasField("verdict") and not behave:
            self.verdict = (reply.verdict.accepted, reply.verdict.reason)


class RogueFleet:
    """Rogue clients on one event loop in a daemon thread; :meth:`close` ends them."""

    def __init__(self, rogues: list[RogueClient]) -> None:
        self.rogues = rogues
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, daemon=True)
        self._tasks: list[asyncio.Task[None]] = []
        self.thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def everyone() -> None:
            self._tasks = [asyncio.create_task(r.run()) for r in self.rogues]
            await asyncio.gather(*self._tasks, return_exceptions=True)

        self.loop.run_until_complete(everyone())

    def close(self) -> None:
        if self.thread.is_alive():
            for task in self._tasks:
                self.loop.call_soon_threadsafe(task.cancel)
            self.thread.join(timeout=10)


def run_held_round(
    processes: Processes,
    config: Path,
    pki: Path,
    real_clients: int,
    rogues: dict[str, dict[str, Any]],
    start_file: Path,
) -> list[RogueClient]:
    """Run a server held at ``start_file`` with real clients and rogues until it exits.

    The server waits for ``start_file`` (``--start-at-file``) so that every client,
    real or rogue (named, with its misbehaviour's flags), is registered and subscribed
    before round 0 forms; then all start together. Returns the rogues, ended.
    """
    server, port = processes.server(
        config, start_file.with_name("port"), "--start-at-file", str(start_file)
    )
    for index in range(real_clients):
        processes.client(port, pki, index)
    fleet = RogueFleet(
        [RogueClient(f"127.0.0.1:{port}", pki, name, **flags) for name, flags in rogues.items()]
    )
    try:
        for rogue in fleet.rogues:
            assert rogue.registered.wait(30), rogue.error
        everyone = real_clients + len(rogues)
        wait_for(
            lambda: processes.log("server").count("client registered") >= everyone,
            120,
            f"{everyone} clients",
        )
        time.sleep(1.0)  # the last subscriptions land
        start_file.write_text(f"{time.time() + 0.5}")
        assert server.wait(timeout=240) == 0, processes.log("server")
    finally:
        fleet.close()
    return fleet.rogues

"""A real participant: dials the aggregator, trains on its own data, uploads its update.

The client initiates every connection (devices sit behind NAT): it registers,
subscribes to instructions on a server stream, downloads each assigned model version
in checksummed chunks, trains with the simulator's :class:`~fedsys.core.training.
LocalTrainer` (on the PyTorch threads the run's ``sim.threads`` gives), encodes with
the run's codec (keeping its own error-feedback residual) and uploads once the server
grants a slot. A lost connection or a server that is not up yet is retried with
exponential backoff and jitter.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import torch
from pydantic import TypeAdapter
from torch import nn

from fedsys import __version__
from fedsys.aggregation.compression import Compressor, TopK
from fedsys.aggregation.config import CompressorConfig
from fedsys.core.threads import use_torch_threads
from fedsys.core.training import LocalTrainer, TrainResult
from fedsys.core.weights import ModelWeights
from fedsys.deploy.secure_client import SecureTaskRunner, task_train_config, train_task
from fedsys.wire import auth
from fedsys.wire.chunks import ChunkTimeoutError, PayloadError, join_async, sha256_hex, split
from fedsys.wire.errors import error_text
from fedsys.wire.protos import deploy_pb2, deploy_pb2_grpc
from fedsys.wire.reconnect import keep_connected
from fedsys.wire.tensors import layout_of, weights_from_bytes
from fedsys.wire.transport import Backoff, ChannelSecurity, open_channel

if TYPE_CHECKING:
    from fedsys.deploy.emulation import DeviceEmulation

_LOGGER = logging.getLogger(__name__)
_FATAL = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
_TRANSIENT = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
    }
)
"""Failures of one transfer on a live link (an overloaded server shedding a call): the
transfer is retried while the task is current, instead of losing the round."""
T = TypeVar("T")


class ClientRefusedError(PermissionError):
    """The server refused this client's identity (unknown or revoked token)."""


@dataclass(frozen=True)
class LocalData:
    """A client's model and training data, built once the run's config is known."""

    model: nn.Module
    features: torch.Tensor
    labels: torch.Tensor


DataProvider = Callable[[dict[str, Any]], LocalData]
"""Builds the client's model and data from the run config sections the server sends."""


@dataclass
class TaskOutcome:
    """How one assigned task ended, as the client saw it (for logs and tests)."""

    round_idx: int
    accepted: bool
    reason: str
    train_s: float


class DeployClient:
    """One participant process (or one of many lightweight ones in a benchmark).

    Parameters
    ----------
    address
        ``host:port`` of the aggregator.
    token
        This client's bearer token.
    security
        TLS settings (CA, and certificate for mutual TLS).
    data
        Builds the model and local data from the run config the server sends.
    backoff
        Reconnection policy.
    seed
        Seeds only the backoff jitter (never a secret).
    max_silence_s
        Reconnect when the server (which pings every ``deploy.ping_interval_s``) has
        said nothing for this long: a half-open link is not waited on forever.
    transfer_attempts
        Tries of one model download or update upload that fails with a transient
        status on a live link, with the backoff's delays in between.
    emulation
        Makes this client behave like a traced device (paced compute, shaped link;
        see :mod:`fedsys.deploy.emulation`); ``None``: a real device.
    session_remaining_s
        Asked at each subscribe: seconds the device expects to stay online from now
        (charging, on Wi-Fi), reported to availability-aware selectors; ``None`` (or a
        callable returning ``None``): unknown.
    """

    def __init__(
        self,
        address: str,
        token: str,
        security: ChannelSecurity,
        data: DataProvider,
        backoff: Backoff | None = None,
        max_message_bytes: int = 4 * 1024 * 1024,
        seed: int | None = None,
        max_silence_s: float = 60.0,
        transfer_attempts: int = 3,
        emulation: DeviceEmulation | None = None,
        session_remaining_s: Callable[[], float | None] | None = None,
    ) -> None:
        self.address = address
        self.token = token
        self.security = security
        self.data = data
        self.backoff = backoff if backoff is not None else Backoff()
        self.max_message_bytes = max_message_bytes
        self.seed = seed
        self.max_silence_s = max_silence_s
        self.transfer_attempts = transfer_attempts
        self._rng = random.Random(seed)
        self.emulation = emulation
        self.session_remaining_s = session_remaining_s
        self.outcomes: list[TaskOutcome] = []
        self.local_: LocalData | None = None
        self.client_id_: int | None = None
        self._residual: torch.Tensor | None = None
        self._metadata = auth.bearer_metadata(token)
        self._secure_stub: deploy_pb2_grpc.SecureAggregatorStub | None = None
        self._secure_steps: asyncio.Queue[deploy_pb2.SecureStep] = asyncio.Queue()
        self._transfer_idle_s = 60.0
        self._transfer_min_bytes_per_s = 1024.0

    async def run(self) -> str:
        """Take part until the server says the run is over; return its reason.

        Raises
        ------
        ClientRefusedError
            If the server does not accept this client's token.
        ConnectionError
            If the server stays unreachable past the backoff's attempts.
        """

        async def session(connected: Callable[[], None]) -> str:
            async with open_channel(self.address, self.security, self.max_message_bytes) as channel:
                stub = deploy_pb2_grpc.AggregatorStub(channel)
                self._secure_stub = deploy_pb2_grpc.SecureAggregatorStub(channel)
                reply = await stub.Register(
                    deploy_pb2.RegisterRequest(fedsys_version=__version__),
                    metadata=self._metadata,
                    timeout=30,
                )
                connected()
                self._prepare(reply)
                return await self._session(stub, reply.session_id)

        reason = await keep_connected(
            session,
            backoff=self.backoff,
            rng=self._rng,
            target=self.address,
            retry_on=(grpc.aio.AioRpcError, ConnectionError),
            fatal=_refusal,
            logger=_LOGGER,
            level=logging.INFO,
        )
        assert reason is not None  # no stop event: only the session's end returns
        return reason

    def _prepare(self, reply: deploy_pb2.RegisterReply) -> None:
        """Build the model and data on first registration; check the model's layout."""
        self.client_id_ = reply.client_id
        run = json.loads(reply.run_config_json)
        deadlines = run.get("deploy", {})
        self._transfer_idle_s = float(deadlines.get("transfer_idle_s", 60.0))
        self._transfer_min_bytes_per_s = float(deadlines.get("transfer_min_bytes_per_s", 1024.0))
        if self.local_ is None:
            self.local_ = self.data(run)
        threads = use_torch_threads(run.get("sim", {}).get("threads", "auto"), self.local_.model)
        _LOGGER.debug("torch threads", extra={"threads": threads})
        ours = layout_of(ModelWeights.from_module(self.local_.model))
        if ours != reply.layout:
            raise ClientRefusedError(
                "this client's model does not match the server's (tensor names or shapes differ)"
            )

    async def _session(self, stub: deploy_pb2_grpc.AggregatorStub, session_id: str) -> str:
        """Read instructions and work on tasks until the server finishes or the link fails.

        The reader and the worker run side by side; whichever fails first ends the
        session (and the caller reconnects), so a broken link seen by either is never
        left waiting on the other.
        """
        assert self.local_ is not None
        request = deploy_pb2.SubscribeRequest(
            session_id=session_id, num_samples=int(self.local_.labels.shape[0])
        )
        if self.emulation is not None:  # an emulated device knows its profile
            profile = self.emulation.profile
            request.device.compute_s_per_sample = profile.compute_s_per_sample
            request.device.down_bytes_per_s = profile.down_bytes_per_s
            request.device.up_bytes_per_s = profile.up_bytes_per_s
        remaining = None if self.session_remaining_s is None else self.session_remaining_s()
        if remaining is not None:
            request.session_remaining_s = max(float(remaining), 1e-3)  # 0: unknown
        tasks: asyncio.Queue[deploy_pb2.TrainTask] = asyncio.Queue()
        self._secure_steps = asyncio.Queue()
        reader = asyncio.create_task(self._read(stub, request, tasks))
        worker = asyncio.create_task(self._work(stub, tasks))
        try:
            done, _ = await asyncio.wait({reader, worker}, return_when=asyncio.FIRST_COMPLETED)
            return (reader if reader in done else worker).result()
        finally:
            for task in (reader, worker):
                task.cancel()
            await asyncio.gather(reader, worker, return_exceptions=True)

    async def _read(
        self,
        stub: deploy_pb2_grpc.AggregatorStub,
        request: deploy_pb2.SubscribeRequest,
        tasks: asyncio.Queue[deploy_pb2.TrainTask],
    ) -> str:
        stream = stub.Subscribe(request, metadata=self._metadata)
        messages = aiter(stream)
        while True:
            try:
                instruction = await asyncio.wait_for(anext(messages), self.max_silence_s)
            except StopAsyncIteration:
                raise ConnectionError("the server closed the instruction stream") from None
            except TimeoutError:
                stream.cancel()
                raise ConnectionError(
                    f"no word from the server for {self.max_silence_s:.0f} s"
                ) from None
            if instruction.HasField("train"):
                tasks.put_nowait(instruction.train)
            elif instruction.HasField("secure"):
                self._secure_steps.put_nowait(instruction.secure)
            elif instruction.HasField("finish"):
                return instruction.finish.reason

    async def _work(
        self, stub: deploy_pb2_grpc.AggregatorStub, tasks: asyncio.Queue[deploy_pb2.TrainTask]
    ) -> str:
        while True:
            task = await tasks.get()
            try:
                outcome = await self.perform(stub, task)
            except grpc.aio.AioRpcError as error:
                _LOGGER.warning(
                    "task failed",
                    extra={"round": task.round_idx, "error": error_text(error)},
                )
                if error.code() == grpc.StatusCode.UNAVAILABLE:
                    raise ConnectionError(f"link to the server lost: {error.details()}") from None
                continue
            self.outcomes.append(outcome)
            level = logging.INFO if outcome.accepted else logging.WARNING
            _LOGGER.log(
                level,
                "update accepted" if outcome.accepted else "update refused",
                extra={"round": task.round_idx, "reason": outcome.reason},
            )

    async def perform(
        self, stub: deploy_pb2_grpc.AggregatorStub, task: deploy_pb2.TrainTask
    ) -> TaskOutcome:
        """Download, train, encode and upload for one task."""
        assert self.local_ is not None
        if task.HasField("secure"):
            return await self._perform_secure(stub, task)
        started = time.monotonic()
        weights = await self.retrying("download", lambda: self.download(stub, task))
        download_s = time.monotonic() - started
        local = self.local_
        config = task_train_config(task)
        train_start = time.monotonic()
        result: TrainResult = await asyncio.to_thread(
            LocalTrainer(config).train,
            local.model,
            weights,
            local.features,
            local.labels,
            int(task.seed),
        )
        train_s = time.monotonic() - train_start
        emulation = self.emulation
        if emulation is not None:
            samples = config.samples_processed(int(local.labels.shape[0]))
            await emulation.pace_compute(int(samples), train_s)
            train_s = time.monotonic() - train_start
        if task.upload_fraction > 0:  # a partial upload: the top-k share, the rest dropped
            partial = TopK(fraction=task.upload_fraction)
            encoded, _ = await asyncio.to_thread(partial.encode, result.delta, None, int(task.seed))
        else:
            compressor = build_compressor(task.codec_json)
            encoded, self._residual = await asyncio.to_thread(
                compressor.encode, result.delta, self._residual, int(task.seed)
            )
        header = deploy_pb2.UpdateHeader(
            task_id=task.task_id,
            round_idx=task.round_idx,
            model_version=task.model_version,
            num_samples=result.num_samples,
            mean_loss=result.loss.mean_loss,
            sum_sq_loss=result.loss.sum_sq_loss,
            samples_seen=result.loss.samples_seen,
            train_s=train_s,
            download_s=download_s,
            codec=encoded.codec,
            payload_bytes=[len(p) for p in encoded.payloads],
        )
        upload_start = time.monotonic()
        payload = await asyncio.to_thread(b"".join, encoded.payloads)
        accepted, reason = await self.retrying("upload", lambda: self.upload(stub, header, payload))
        if emulation is not None:
            emulation.finish_task(
                task,
                time.monotonic() - started,
                download_s,
                train_s,
                time.monotonic() - upload_start,
                len(payload),
                accepted,
                reason,
            )
        return TaskOutcome(task.round_idx, accepted, reason, train_s)

    async def retrying(self, what: str, transfer: Callable[[], Awaitable[T]]) -> T:
        """Run one transfer, trying again after a transient failure on a live link.

        An upload retried after the server accepted it (the verdict was lost) is
        refused as no longer assigned: an update is never counted twice.
        """
        for attempt in range(self.transfer_attempts):
            try:
                return await transfer()
            except grpc.aio.AioRpcError as error:
                if error.code() not in _TRANSIENT or attempt + 1 >= self.transfer_attempts:
                    raise
                delay = self.backoff.delay_s(attempt, self._rng)
                _LOGGER.info(
                    "retrying transfer",
                    extra={
                        "what": what,
                        "error": error_text(error),
                        "in_s": round(delay, 2),
                    },
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _perform_secure(
        self, stub: deploy_pb2_grpc.AggregatorStub, task: deploy_pb2.TrainTask
    ) -> TaskOutcome:
        """Take part in the task's secure round while downloading and training."""
        assert self.client_id_ is not None and self._secure_stub is not None
        started = time.monotonic()
        runner = SecureTaskRunner(self._secure_stub, self._metadata, task, self._secure_steps)
        accepted, reason = await runner.run(self.client_id_, self.train_secure(stub, task))
        return TaskOutcome(task.round_idx, accepted, reason, time.monotonic() - started)

    async def train_secure(
        self, stub: deploy_pb2_grpc.AggregatorStub, task: deploy_pb2.TrainTask
    ) -> TrainResult:
        """Download and train for a secure task (runs beside the key exchange)."""
        assert self.local_ is not None
        weights = await self.retrying("download", lambda: self.download(stub, task))
        local = self.local_
        return await train_task(local.model, weights, local.features, local.labels, task)

    async def download(
        self, stub: deploy_pb2_grpc.AggregatorStub, task: deploy_pb2.TrainTask
    ) -> ModelWeights:
        """The task's model version, reassembled and checked against its checksum."""
        assert self.local_ is not None
        stream = stub.GetModel(
            deploy_pb2.ModelRequest(model_version=task.model_version),
            metadata=self._metadata,
            timeout=300,
        )
        chunks = stream if self.emulation is None else self.emulation.shape_download(stream)
        try:  # checked against the assigned digest on a worker thread
            data = await join_async(
                chunks,
                max_bytes=int(task.model_bytes),
                sha256=task.model_sha256,
                idle_timeout_s=self._transfer_idle_s,
                min_bytes_per_s=self._transfer_min_bytes_per_s,
                wait_first=False,  # the server may queue the download for a free slot
            )
        except PayloadError as exc:
            raise ConnectionError(f"downloaded model refused: {exc}") from None
        except ChunkTimeoutError as exc:  # a silent or crawling server: reconnect
            stream.cancel()
            raise ConnectionError(f"model download {exc}") from None
        layout = layout_of(ModelWeights.from_module(self.local_.model))
        return await asyncio.to_thread(weights_from_bytes, data, layout)

    async def upload(
        self, stub: deploy_pb2_grpc.AggregatorStub, header: deploy_pb2.UpdateHeader, payload: bytes
    ) -> tuple[bool, str]:
        """Send the header, wait for a grant, stream the chunks; the server's verdict."""
        header.sha256 = await asyncio.to_thread(sha256_hex, payload)
        call = stub.Upload(metadata=self._metadata, timeout=600)
        await call.write(deploy_pb2.UploadMessage(header=header))
        reply = await call.read()
        if reply is grpc.aio.EOF:
            return False, "server closed the upload"
        if reply.HasField("verdict"):
            await call.done_writing()
            return reply.verdict.accepted, reply.verdict.reason
        checksum = header.sha256
        if self.emulation is not None:
            self.emulation.up.start()
        for chunk in split(payload, int(reply.grant.max_chunk_bytes), checksum):
            if self.emulation is not None:
                await self.emulation.up.carry(len(chunk.data))
            await call.write(deploy_pb2.UploadMessage(chunk=chunk))
        if self.emulation is not None:
            self.emulation.up.finish()
        await call.done_writing()
        reply = await call.read()
        if reply is grpc.aio.EOF or not reply.HasField("verdict"):
            return False, "server closed the upload without a verdict"
        return reply.verdict.accepted, reply.verdict.reason


def _refusal(error: BaseException) -> BaseException | None:
    """A failure that retrying cannot fix: the server refused this client's token."""
    if isinstance(error, grpc.aio.AioRpcError) and error.code() in _FATAL:
        return ClientRefusedError(f"server refused this client: {error.details()}")
    return None


def build_compressor(codec_json: str) -> Compressor:
    """The run's codec from its JSON settings (validated like a config section)."""
    config = TypeAdapter(CompressorConfig).validate_python(json.loads(codec_json))
    return config.build()

"""The aggregator's gRPC face: register, subscribe, download, upload, status.

Handlers check and translate; they are given the aggregator's state
(:class:`~fedsys.deploy.state.ServerState`); round logic lives in
:mod:`fedsys.deploy.rounds`. Every call was authenticated by the token interceptor
before it gets here; every refusal names its reason.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc

from fedsys.aggregation.compression import Compressor, EncodedUpdate, TopK, top_k_count
from fedsys.core.update import ClientUpdate, LossStats
from fedsys.core.weights import ModelWeights
from fedsys.deploy.late import HeldUpdate, late_policy
from fedsys.deploy.registry import Assignment, Session, UnknownClientError
from fedsys.wire import auth
from fedsys.wire.chunks import (
    ChunkTimeoutError,
    LendingSlot,
    PayloadError,
    Reassembler,
    StreamCutError,
    TransferClock,
    receive,
    split,
)
from fedsys.wire.protos import common_pb2, deploy_pb2, deploy_pb2_grpc
from fedsys.wire.tensors import layout_of

if TYPE_CHECKING:
    from fedsys.deploy.state import ServerState

_LOGGER = logging.getLogger(__name__)


class UpdateRefusedError(ValueError):
    """An upload that will not be aggregated, with the reason sent back to the client."""


class UploadCutError(ConnectionError):
    """The client's upload stream ended before its last chunk: a lost link, not a refusal.

    The task stays assigned: a client whose device went offline mid-upload is a
    dropout once its session closes (as the simulator counts it), and a client still
    connected may send the update again.
    """


class LateUpdateError(UpdateRefusedError):
    """A valid upload that arrived after its round closed (a straggler), not a rejection."""


def straggler_reason(round_idx: int) -> str:
    """What a straggler is told."""
    return f"round {round_idx} closed before the update arrived (straggler)"


class AggregatorService(deploy_pb2_grpc.AggregatorServicer):
    """gRPC servicer given one aggregator's :class:`~fedsys.deploy.state.ServerState`."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    # ------------------------------------------------------------------ helpers
    def _name(self, context: grpc.aio.ServicerContext) -> str:
        return auth.caller_name(self.state.tokens, context)

    def _stamp(self, client_id: int | None, mark: str, task: Assignment | None = None) -> None:
        """Note ``mark`` of the client's task (default: its current one) in the live round."""
        live = self.state.live_round
        if live is None or client_id is None:
            return
        if task is None:
            session = self.state.registry.sessions.get(client_id)
            task = None if session is None else session.assignment
        if task is not None:
            live.stamp(client_id, task.task_id, mark)

    # ------------------------------------------------------------------ register
    async def Register(  # noqa: N802
        self, request: deploy_pb2.RegisterRequest, context: grpc.aio.ServicerContext
    ) -> deploy_pb2.RegisterReply:
        name = self._name(context)
        try:
            session = self.state.registry.connect(name)
        except UnknownClientError as exc:
            _LOGGER.warning("refused registration: %s", exc, extra={"client": name})
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        _LOGGER.info(
            "client registered",
            extra={
                "client": name,
                "client_id": session.client_id,
                "fedsys_version": request.fedsys_version,
            },
        )
        return deploy_pb2.RegisterReply(
            client_id=session.client_id,
            session_id=session.session_id,
            run_config_json=self.state.client_config_json(),
            layout=layout_of(self.state.weights),
        )

    # ------------------------------------------------------------------ subscribe
    async def Subscribe(  # noqa: N802
        self, request: deploy_pb2.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[deploy_pb2.Instruction]:
        name = self._name(context)
        try:
            session = self.state.registry.session(name, request.session_id)
        except UnknownClientError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"{exc}: register again")
        if request.num_samples < 1:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "num_samples must be >= 1")
        try:
            speed = device_speed(request.device) if request.HasField("device") else None
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        remaining = request.session_remaining_s
        if not (math.isfinite(remaining) and remaining >= 0):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad session_remaining_s")
        session.num_samples = int(request.num_samples)
        session.speed = speed
        session.online_until_s = self.state.now_s() + remaining if remaining else math.nan
        session.subscribed = True
        self.state.registry.changed.set()
        ping_s = self.state.settings.ping_interval_s
        try:
            while not session.closed:
                try:
                    instruction = await asyncio.wait_for(session.outbox.get(), ping_s)
                except TimeoutError:
                    instruction = deploy_pb2.Instruction(
                        ping=deploy_pb2.Ping(server_time_s=self.state.now_s())
                    )
                if session.closed:  # superseded by a reconnect, or its transfer was cut
                    return
                session.last_seen = time.monotonic()
                yield instruction
                if instruction.HasField("finish"):
                    return
        finally:
            if self.state.registry.disconnect(session.session_id) is not None:
                _LOGGER.info("client disconnected", extra={"client": name})

    # ------------------------------------------------------------------ model
    async def GetModel(  # noqa: N802
        self, request: deploy_pb2.ModelRequest, context: grpc.aio.ServicerContext
    ) -> None:
        name = self._name(context)
        model = self.state.model_blob
        if request.model_version != model.version:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"model version {request.model_version} is gone; current is {model.version}",
            )
        settings = self.state.settings
        client_id = self.state.registry.ids.get(name)
        self._stamp(client_id, "download_start")  # waiting for a slot is part of the download
        async with self.state.download_slots:
            clock = TransferClock(
                settings.transfer_idle_s, settings.transfer_min_bytes_per_s, len(model.data)
            )
            try:
                for chunk in split(model.data, settings.chunk_bytes, model.sha256):
                    wait = clock.wait_s()
                    try:  # a client that stops reading stalls the write (flow control)
                        await asyncio.wait_for(context.write(chunk), wait)
                    except TimeoutError:
                        raise clock.expired(wait) from None
            except ChunkTimeoutError as exc:
                reason = f"model download stalled: {exc}"
                self._cut_download(name, model.version, reason)
                problem: str | None = reason
            else:
                problem = None
        if problem is not None:  # the slot is free before the call ends
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, problem)
        self._stamp(client_id, "download_end")
        self.state.memory.transfer_finished()
        live = self.state.live_round
        if live is not None and live.model_version == model.version:
            live.bytes_down += len(model.data)

    def _cut_download(self, name: str, model_version: int, reason: str) -> None:
        """A download that missed its deadline: its client's task of that model drops out."""
        session = self.state.registry.sessions.get(self.state.registry.client_id(name))
        task = None if session is None else session.assignment
        if session is None or task is None or task.model_version != model_version:
            _LOGGER.warning("transfer cut", extra={"client": name, "reason": reason})
            return
        self.cut_transfer(session, task, reason)

    # ------------------------------------------------------------------ upload
    async def Upload(  # noqa: N802
        self,
        request_iterator: AsyncIterator[deploy_pb2.UploadMessage],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[deploy_pb2.UploadReply]:
        name = self._name(context)
        client_id = self.state.registry.client_id(name)
        messages = aiter(request_iterator)
        first = await anext(messages, None)
        if first is None or not first.HasField("header"):
            yield _verdict(False, "an upload must start with its header")
            return
        header = first.header
        try:
            session = self._assigned_session(name, header)
        except UpdateRefusedError as exc:
            self._record_refusal(client_id, str(exc), ends_task=False)
            yield _verdict(False, str(exc))
            return
        assignment = session.assignment
        assert assignment is not None
        live = self.state.live_round
        late = live is None or not live.is_open_for(assignment.round_idx)
        if late and not late_policy(self.state).enabled:
            self._stamp(client_id, "ended", assignment)  # turned away: a straggler
            self.state.registry.release(client_id, assignment.task_id)
            yield _verdict(False, straggler_reason(assignment.round_idx))
            return
        if session.uploading == assignment.task_id:
            yield _verdict(False, "an upload of this task is already in progress")
            return
        session.uploading = assignment.task_id
        self._stamp(client_id, "upload_start", assignment)
        # The slot is held while chunks flow and until the update is in the strategy's
        # hands (or refused): received, decoded and waiting updates together stay at most
        # upload_slots, except quiet uploads, which lend their slot back (their partial
        # buffer stays) until their next chunk or their cut.
        slot = LendingSlot(self.state.upload_slots, self.state.settings.upload_lend_after_s)
        try:
            codec, expected_bytes = self._task_codec(assignment)
            self._check_header(header, codec, expected_bytes)
            await slot.take()
            yield deploy_pb2.UploadReply(
                grant=deploy_pb2.Grant(max_chunk_bytes=self.state.settings.chunk_bytes)
            )
            payload = await self._receive(messages, header, slot, expected_bytes)
            self._stamp(client_id, "upload_end", assignment)
            # Decoding and validating grow with the model: a worker thread does them.
            weights = self.state.weights
            update = await asyncio.to_thread(
                self._decode, client_id, header, payload, assignment.assigned_at, weights, codec
            )
            del payload  # the update's tensors view it; nothing else may keep it
            problem = await asyncio.to_thread(self.state.validator.problem, update, weights)
            if problem is not None:
                raise UpdateRefusedError(f"invalid update: {problem}")
            await self._deliver(update, assignment)
            del update
            slot.release()
            self.state.memory.transfer_finished()
        except LateUpdateError as exc:
            self._stamp(client_id, "ended", assignment)
            self.state.registry.release(client_id, assignment.task_id)
            yield _verdict(False, str(exc))
            return
        except UploadCutError as exc:
            _LOGGER.info("upload cut short", extra={"client_id": client_id, "reason": str(exc)})
            return
        except ChunkTimeoutError as exc:
            slot.release()  # free at once, before the verdict goes out
            reason = f"upload {exc}"
            self.cut_transfer(session, assignment, reason)
            yield _verdict(False, reason)
            return
        except (UpdateRefusedError, PayloadError) as exc:
            slot.release()
            self._record_refusal(client_id, str(exc), ends_task=True)
            self.state.registry.release(client_id, assignment.task_id)
            yield _verdict(False, str(exc))
            return
        finally:
            slot.release()
            if session.uploading == assignment.task_id:
                session.uploading = None
        self.state.registry.release(client_id, assignment.task_id)
        yield _verdict(True, "")

    async def _deliver(self, update: ClientUpdate, task: Assignment) -> None:
        """Count ``update`` in the live round, or hold it for the next one when it is late.

        Raises
        ------
        LateUpdateError
            If it is late and the run discards late updates.
        """
        live = self.state.live_round
        try:
            if live is None:
                raise LateUpdateError(straggler_reason(task.round_idx))
            await live.accept(update, task)
        except LateUpdateError:
            if not late_policy(self.state).enabled:
                raise
            self.state.late_held.append(HeldUpdate(update, task.round_idx))
            _LOGGER.info(
                "late update held for the next round",
                extra={"client_id": update.client_id, "round": task.round_idx},
            )

    def cut_transfer(self, session: Session, assignment: Assignment, reason: str) -> None:
        """A transfer of ``assignment`` missed its deadline: the client dropped out.

        Its slot must be free already; the live round records it ``dropped`` with ``reason``
        and its session is closed (a device silent mid-transfer has lost its link; it
        registers again when it comes back).
        """
        _LOGGER.warning("transfer cut", extra={"client_id": session.client_id, "reason": reason})
        live = self.state.live_round
        if live is not None and live.round_idx == assignment.round_idx:
            live.drop(session.client_id, reason)
        self.state.registry.release(session.client_id, assignment.task_id)
        self.state.registry.disconnect(session.session_id)

    def _assigned_session(self, name: str, header: deploy_pb2.UpdateHeader) -> Session:
        client_id = self.state.registry.client_id(name)
        session = self.state.registry.sessions.get(client_id)
        assignment = None if session is None else session.assignment
        if session is None or assignment is None or assignment.task_id != header.task_id:
            raise UpdateRefusedError(
                f"update for task {header.task_id[:8] or '-'} of round {header.round_idx} was "
                "not assigned to this client (replayed, stale or never assigned)"
            )
        if (header.round_idx, header.model_version) != (
            assignment.round_idx,
            assignment.model_version,
        ):
            raise UpdateRefusedError(
                f"update claims round {header.round_idx} / model {header.model_version}, "
                f"the task was round {assignment.round_idx} / model {assignment.model_version}"
            )
        return session

    def _task_codec(self, task: Assignment) -> tuple[Compressor, int]:
        """The codec and upload size of ``task``: the run's, or its partial (top-k) share."""
        if task.upload_fraction < 1:
            num_params = self.state.weights.num_params
            return TopK(task.upload_fraction), 8 * top_k_count(num_params, task.upload_fraction)
        return self.state.compressor, self.state.update_bytes

    def _check_header(
        self, header: deploy_pb2.UpdateHeader, codec: Compressor, expected_bytes: int
    ) -> None:
        whose = "the run" if codec is self.state.compressor else "this partial upload"
        if header.codec != codec.codec:
            raise UpdateRefusedError(f"codec {header.codec!r}, {whose} uses {codec.codec!r}")
        declared = sum(int(n) for n in header.payload_bytes)
        if declared != expected_bytes:
            of = "an update of this model" if whose == "the run" else "this partial upload"
            raise UpdateRefusedError(
                f"update declares {declared} bytes, {of} is {expected_bytes} bytes"
            )
        if header.num_samples < 1:
            raise UpdateRefusedError("num_samples must be >= 1")
        values = (header.mean_loss, header.sum_sq_loss, header.train_s)
        if not all(math.isfinite(v) for v in values):
            raise UpdateRefusedError("reported loss or time is not finite")

    async def _receive(
        self,
        messages: AsyncIterator[deploy_pb2.UploadMessage],
        header: deploy_pb2.UpdateHeader,
        slot: LendingSlot,
        expected_bytes: int,
    ) -> bytearray:
        """The update's bytes, verified, within the transfer deadlines (``slot`` lent while quiet).

        Raises
        ------
        ChunkTimeoutError
            The client was silent for ``transfer_idle_s`` or slower than
            ``transfer_min_bytes_per_s`` over the update.
        """
        assembler = Reassembler(
            max_bytes=expected_bytes,
            expected_bytes=expected_bytes,
            expected_sha256=header.sha256,
        )
        try:
            return await receive(
                messages,
                assembler,
                idle_timeout_s=self.state.settings.transfer_idle_s,
                min_bytes_per_s=self.state.settings.transfer_min_bytes_per_s,
                chunk_of=_update_chunk,
                slot=slot,
            )
        except StreamCutError:
            raise UploadCutError("the upload stream ended before its last chunk") from None

    def _decode(
        self,
        client_id: int,
        header: deploy_pb2.UpdateHeader,
        payload: bytearray,
        assigned_at: float,
        weights: ModelWeights,
        codec: Compressor,
    ) -> ClientUpdate:
        """The update in ``payload`` (runs on a worker thread: it grows with the model)."""
        sizes = [int(n) for n in header.payload_bytes]
        view = memoryview(payload)  # slices of the receive buffer, not copies
        parts, offset = [], 0
        for size in sizes:
            parts.append(view[offset : offset + size])
            offset += size
        encoded = EncodedUpdate(codec=header.codec, payloads=tuple(parts))
        try:
            delta = codec.decode(encoded, like=weights)
        except (ValueError, RuntimeError) as exc:
            raise UpdateRefusedError(f"malformed update: {exc}") from None
        loss = LossStats(
            mean_loss=header.mean_loss,
            sum_sq_loss=header.sum_sq_loss,
            samples_seen=int(header.samples_seen),
        )
        return ClientUpdate(
            client_id=client_id,
            delta=delta,
            num_samples=int(header.num_samples),
            duration_s=time.monotonic() - assigned_at,
            loss=loss,
            round_idx=int(header.model_version),
            upload_bytes=len(payload),
        )

    def _record_refusal(self, client_id: int, reason: str, *, ends_task: bool) -> None:
        _LOGGER.warning("refused update", extra={"client_id": client_id, "reason": reason})
        current = self.state.live_round
        if current is not None:
            current.refuse(client_id, reason, ends_task=ends_task)

    # ------------------------------------------------------------------ status
    async def Status(  # noqa: N802
        self, request: deploy_pb2.StatusRequest, context: grpc.aio.ServicerContext
    ) -> deploy_pb2.StatusReply:
        self._name(context)
        return self.state.status()


def _update_chunk(message: deploy_pb2.UploadMessage) -> common_pb2.Chunk:
    if not message.HasField("chunk"):
        raise UpdateRefusedError("expected update chunks after the grant")
    return message.chunk


def _verdict(accepted: bool, reason: str) -> deploy_pb2.UploadReply:
    return deploy_pb2.UploadReply(
        verdict=deploy_pb2.UpdateVerdict(accepted=accepted, reason=reason)
    )


def device_speed(device: deploy_pb2.DeviceSpeed) -> tuple[float, float, float] | None:
    """A subscriber's reported speeds; ``None`` when one is unknown (left 0).

    Raises
    ------
    ValueError
        If a speed is negative or not finite.
    """
    values = (device.compute_s_per_sample, device.down_bytes_per_s, device.up_bytes_per_s)
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"device speeds must be finite and >= 0, got {values}")
    return values if all(v > 0 for v in values) else None

"""Secure aggregation in the deployment: one round of SecAgg+ over the live gRPC clients.

When ``deploy.secure_aggregation`` is set, a :class:`SecureRound` takes the place of
the streaming feed of a round: it hands each selected client its setup inside the
train task, relays keys and encrypted shares over the instruction stream while the
clients train, adds masked inputs to a running sum as they arrive, and once the round
closes asks the survivors for the shares that remove the masks. The strategy then runs
on the mean the sum reveals (see :mod:`fedsys.secure.plan`). The protocol steps are
:class:`~fedsys.secure.SecAggServer`'s; this module only moves messages and waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np

from fedsys.core.update import LossStats
from fedsys.core.weights import ModelWeights
from fedsys.deploy.round_state import Arrival, LiveRound
from fedsys.deploy.service import straggler_reason
from fedsys.secure.crypto import mask_dtype
from fedsys.secure.errors import ProtocolViolationError, SecureAggregationError
from fedsys.secure.graph import default_degree
from fedsys.secure.messages import MaskedInput
from fedsys.secure.plan import SecurePlan
from fedsys.secure.server import SecAggServer
from fedsys.wire import auth, secagg
from fedsys.wire.chunks import PayloadError, Reassembler, StreamCutError, receive
from fedsys.wire.protos import common_pb2, deploy_pb2, deploy_pb2_grpc

if TYPE_CHECKING:
    from fedsys.deploy.state import ServerState

_LOGGER = logging.getLogger(__name__)
_POLL_S = 0.25
_CUT = "masked input ended before all its chunks"


class SecureRound:
    """The feed of one secure round (``add`` is replaced by the masked-input path).

    Parameters
    ----------
    server
        The aggregator's state (registry, strategy, settings).
    round_idx
        The round.
    clients
        Selected clients with a live session.
    plan
        How updates become vectors and the sum becomes the strategy's input.
    weights, state
        Global weights and strategy state the round starts from.
    """

    def __init__(
        self,
        server: ServerState,
        round_idx: int,
        clients: list[int],
        plan: SecurePlan,
        weights: ModelWeights,
        state: Any,
    ) -> None:
        settings = server.settings
        self.server = server
        self.round_idx = round_idx
        self.plan = plan
        self.weights = weights
        self.state = state
        self.count = 0
        self.protocol = SecAggServer(
            clients,
            weights.num_params + 1,
            threshold=settings.secure_threshold,
            degree=_degree(settings.secure_aggregation, settings.secure_degree, len(clients)),
            clip_range=settings.secure_clip_range,
            bits=settings.secure_bits,
        )
        self.setups = self.protocol.setup() if len(clients) >= 2 else {}
        self.task_ids: dict[int, str] = {}
        self.live: LiveRound | None = None
        self.error: str | None = None if self.setups else "fewer than 2 clients selected"
        self.timings: dict[str, float] = {}
        self._changed = asyncio.Event()
        self._keys_done: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ setup
    def task_for(self, client: int, task_id: str) -> deploy_pb2.SecureTask:
        """The secure part of ``client``'s train task."""
        self.task_ids[client] = task_id
        plan = self.plan
        return deploy_pb2.SecureTask(
            setup=secagg.setup_to_proto(self.setups[client]) if self.setups else None,
            weighted=plan.weighted,
            clip_norm=plan.clip_norm or 0.0,
            max_weight=plan.max_weight,
            step_timeout_s=self.server.settings.secure_step_timeout_s,
        )

    def start(self, live: LiveRound) -> None:
        """Begin relaying keys and shares once the tasks are out."""
        self.live = live
        if self.error is None:
            self._keys_done = asyncio.create_task(self._key_steps())
        else:
            self._abort(set(self.task_ids), self.error)

    # ------------------------------------------------------------------ waiting
    def _gone(self) -> set[int]:
        live = self.live
        return set() if live is None else set(live.dropped)

    async def _await(self, ready: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready() and time.monotonic() < deadline:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), _POLL_S)

    def _push(self, client: int, step: deploy_pb2.SecureStep) -> None:
        session = self.server.registry.sessions.get(client)
        if session is not None and client in self.task_ids:
            step.task_id = self.task_ids[client]
            session.outbox.put_nowait(deploy_pb2.Instruction(secure=step))

    def _abort(self, clients: set[int], reason: str) -> None:
        """Tell ``clients`` their part is over and free them for the next round."""
        for client in sorted(clients):
            self._push(client, deploy_pb2.SecureStep(abort=reason))
            self.server.registry.release(client, self.task_ids.get(client, ""))

    def _fail(self, reason: str) -> None:
        if self.error is None:
            self.error = reason
            _LOGGER.warning(
                "secure round failed", extra={"round": self.round_idx, "reason": reason}
            )
        self._abort(set(self.task_ids), reason)

    # ------------------------------------------------------------------ steps 1-2
    async def _key_steps(self) -> None:
        protocol = self.protocol
        timeout_s = self.server.settings.secure_step_timeout_s
        everyone = set(self.task_ids)
        started = time.perf_counter()
        try:
            await self._await(lambda: everyone - self._gone() <= set(protocol.adverts_), timeout_s)
            routed = protocol.close_adverts()
            self._abort(everyone - set(routed), "no keys in time")
            for client, adverts in routed.items():
                keys = deploy_pb2.NeighbourKeys(
                    adverts=[secagg.advert_to_proto(a) for a in adverts]
                )
                self._push(client, deploy_pb2.SecureStep(keys=keys))
            keyed = set(routed)
            await self._await(lambda: keyed - self._gone() <= protocol.sharers_, timeout_s)
            delivered = protocol.close_shares()
            self._abort(keyed - set(delivered), "no shares in time")
            for client, shares in delivered.items():
                batch = deploy_pb2.ShareDelivery(shares=[secagg.share_to_proto(s) for s in shares])
                self._push(client, deploy_pb2.SecureStep(shares=batch))
        except SecureAggregationError as exc:
            self._fail(str(exc))
        self.timings["key_steps_s"] = time.perf_counter() - started

    def on_message(self, client: int, message: deploy_pb2.SecureMessage) -> None:
        """Keys or shares from a client (raises ProtocolViolationError when out of turn)."""
        if self.error is not None:
            raise ProtocolViolationError(f"round {self.round_idx} failed: {self.error}")
        if message.HasField("keys"):
            advert = secagg.advert_from_proto(message.keys)
            if advert.client_id != client:
                raise ProtocolViolationError("keys must carry the sender's own client id")
            self.protocol.receive_advert(advert)
        elif message.HasField("shares"):
            shares = [secagg.share_from_proto(s) for s in message.shares.shares]
            self.protocol.receive_shares(client, shares)
        elif message.HasField("unmask"):
            reply = secagg.reply_from_proto(message.unmask)
            if reply.client_id != client:
                raise ProtocolViolationError("an unmask reply must carry the sender's client id")
            self.protocol.receive_unmask(reply)
        else:
            raise ProtocolViolationError("empty secure message")
        self._changed.set()

    # ------------------------------------------------------------------ step 3
    async def add_masked(
        self, client: int, header: deploy_pb2.MaskedInputHeader, values: np.ndarray, size: int
    ) -> None:
        """Count one masked input in the round (refused when late or out of turn)."""
        live = self.live
        if live is None or self.error is not None:
            raise ProtocolViolationError(f"round {self.round_idx} takes no input: {self.error}")
        async with live.feed_lock:
            if not live.is_open_for(int(header.round_idx)):
                raise ProtocolViolationError(straggler_reason(self.round_idx))
            self.protocol.receive_masked(MaskedInput(client, values))
            self.count += 1
            assignment = live.assignments[client]
            live.arrivals.append(
                Arrival(
                    client_id=client,
                    duration_s=time.monotonic() - assignment.assigned_at,
                    num_samples=int(header.num_samples),
                    loss=LossStats(header.mean_loss, header.sum_sq_loss, int(header.samples_seen)),
                    upload_bytes=size,
                )
            )
            live.notify()

    # ------------------------------------------------------------------ step 4
    async def finish(self) -> tuple[ModelWeights, Any] | None:
        """Unmask with the survivors' shares and run the strategy on the mean.

        Returns ``None`` (the model stays as it was, ``error`` says why) when the round
        failed: too many dropouts, or nobody sent input.
        """
        if self._keys_done is not None:
            await self._keys_done
        if self.error is not None:
            return None
        protocol = self.protocol
        if protocol.stage != "shares" or not protocol.inputs_:
            self._fail("no masked input arrived")
            return None
        started = time.perf_counter()
        try:
            requests = protocol.close_inputs()
        except SecureAggregationError as exc:
            self._fail(str(exc))
            return None
        self._abort(protocol.sharers_ - set(requests), "your input did not arrive in time")
        for client, request in requests.items():
            self._push(client, deploy_pb2.SecureStep(unmask=secagg.request_to_proto(request)))
        await self._await(
            lambda: set(requests) - self._gone() <= set(protocol.replies_),
            self.server.settings.secure_step_timeout_s,
        )
        try:
            result = await asyncio.to_thread(protocol.finish)
        except (SecureAggregationError, ProtocolViolationError) as exc:
            self._fail(str(exc))
            return None
        real = protocol.quantizer.dequantize_sum(result.total, len(result.contributors))
        outcome = await asyncio.to_thread(
            self.plan.aggregate,
            self.server.parts.strategy,
            self.weights,
            real,
            len(result.contributors),
            self.state,
        )
        self.timings["unmask_s"] = time.perf_counter() - started
        return outcome

    def summary(self) -> dict[str, Any]:
        """What the round record says of the protocol."""
        protocol = self.protocol
        return {
            "protocol": self.server.settings.secure_aggregation,
            "threshold": protocol.threshold_,
            "degree": max((len(p) for p in protocol.graph_.values()), default=0),
            "keyed": len(protocol.keyed_),
            "shared": len(protocol.sharers_),
            "inputs": len(protocol.inputs_),
            "unmask_replies": len(protocol.replies_),
            "error": self.error,
            **{k: round(v, 4) for k, v in self.timings.items()},
        }


def _degree(protocol: str, degree: int | None, clients: int) -> int | None:
    """Neighbours per client: all pairs for ``secagg``, else the setting or O(log n)."""
    if protocol == "secagg":
        return None
    return degree if degree is not None else default_degree(clients)


class SecureService(deploy_pb2_grpc.SecureAggregatorServicer):
    """gRPC face of the secure rounds (behind the same token interceptor as the rest)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    def _round(self, name: str, task_id: str, round_idx: int) -> tuple[int, SecureRound]:
        server = self.state
        client = server.registry.client_id(name)
        live = server.live_round
        feed = None if live is None else live.feed
        if not isinstance(feed, SecureRound) or live is None or live.round_idx != round_idx:
            raise ProtocolViolationError(f"round {round_idx} is not a live secure round")
        if feed.task_ids.get(client) != task_id:
            raise ProtocolViolationError(
                f"task {task_id[:8] or '-'} of round {round_idx} was not assigned to this client"
            )
        return client, feed

    async def SecureSend(  # noqa: N802
        self, request: deploy_pb2.SecureMessage, context: grpc.aio.ServicerContext
    ) -> deploy_pb2.SecureAck:
        name = auth.caller_name(self.state.tokens, context)
        try:
            client, feed = self._round(name, request.task_id, int(request.round_idx))
            feed.on_message(client, request)
        except ProtocolViolationError as exc:
            _LOGGER.warning("refused secure message", extra={"client": name, "reason": str(exc)})
            return deploy_pb2.SecureAck(accepted=False, reason=str(exc))
        return deploy_pb2.SecureAck(accepted=True)

    async def SendMaskedInput(  # noqa: N802
        self,
        request_iterator: AsyncIterator[deploy_pb2.MaskedUpload],
        context: grpc.aio.ServicerContext,
    ) -> deploy_pb2.SecureAck:
        name = auth.caller_name(self.state.tokens, context)
        messages = aiter(request_iterator)
        first = await anext(messages, None)
        if first is None or not first.HasField("header"):
            return deploy_pb2.SecureAck(
                accepted=False, reason="a masked input starts with its header"
            )
        header = first.header
        client = -1
        try:
            client, feed = self._round(name, header.task_id, int(header.round_idx))
            _stamp(feed, client, header.task_id, "upload_start")
            length = feed.protocol.vector_length
            dtype = mask_dtype(feed.protocol.bits).newbyteorder("<")
            size = length * dtype.itemsize
            assembler = Reassembler(max_bytes=size, expected_bytes=size)
            async with self.state.upload_slots:
                try:
                    payload = await receive(
                        messages,
                        assembler,
                        idle_timeout_s=self.state.settings.transfer_idle_s,
                        min_bytes_per_s=self.state.settings.transfer_min_bytes_per_s,
                        chunk_of=_masked_chunk,
                    )
                except StreamCutError:
                    raise ProtocolViolationError(_CUT) from None
            _stamp(feed, client, header.task_id, "upload_end")
            values = await asyncio.to_thread(_native, payload, dtype)
            await feed.add_masked(client, header, values, size)
        except (ProtocolViolationError, PayloadError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            _LOGGER.warning("refused masked input", extra={"client": name, "reason": reason})
            if client >= 0:
                self.state.registry.release(client, header.task_id)
            return deploy_pb2.SecureAck(accepted=False, reason=reason)
        self.state.registry.release(client, header.task_id)
        return deploy_pb2.SecureAck(accepted=True)


def _stamp(feed: SecureRound, client: int, task_id: str, mark: str) -> None:
    """Note a phase mark of the client's masked upload for the round's timeline."""
    if feed.live is not None:
        feed.live.stamp(client, task_id, mark)


def _masked_chunk(message: deploy_pb2.MaskedUpload) -> common_pb2.Chunk:
    if not message.HasField("chunk"):
        raise ProtocolViolationError(_CUT)
    return message.chunk


def _native(payload: bytearray, dtype: np.dtype) -> np.ndarray:
    """The little-endian masked vector in native byte order (a copy: grows with the model)."""
    return np.frombuffer(payload, dtype=dtype).astype(dtype.newbyteorder("="))

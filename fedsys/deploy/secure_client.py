"""A deployment client's part in a secure round: train, and send only a masked update.

Runs the :class:`~fedsys.secure.SecAggClient` steps for one train task that carries a
``SecureTask``: advertise keys, share secrets with the neighbours the server relays,
train meanwhile, mask the quantized ``[w · delta, w]`` and stream it, then reveal the
shares the server asks for (an honest client refuses to reveal both kinds of one
peer's secrets). Each wait for the server's next step has a deadline.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable
from dataclasses import replace

import grpc

from fedsys.core.training import LocalTrainer, TrainConfig, TrainResult
from fedsys.core.weights import ModelWeights
from fedsys.secure.client import SecAggClient
from fedsys.secure.errors import ProtocolViolationError, SecureAggregationError
from fedsys.secure.plan import SecurePlan
from fedsys.wire import secagg
from fedsys.wire.chunks import split
from fedsys.wire.errors import error_text
from fedsys.wire.protos import deploy_pb2, deploy_pb2_grpc

_MASKED_CHUNK_BYTES = 1 << 20


class SecureTaskError(RuntimeError):
    """This client's part in the secure round ended early (abort, refusal, timeout)."""


class SecureTaskRunner:
    """One secure task of one client.

    Parameters
    ----------
    stub
        The secure aggregation service on the client's authenticated channel.
    metadata
        The client's bearer-token metadata.
    task
        The train task (with its ``secure`` part).
    steps
        The server's secure steps for this client, as the instruction reader queues them.
    """

    def __init__(
        self,
        stub: deploy_pb2_grpc.SecureAggregatorStub,
        metadata: tuple[tuple[str, str], ...],
        task: deploy_pb2.TrainTask,
        steps: asyncio.Queue[deploy_pb2.SecureStep],
    ) -> None:
        self.stub = stub
        self.metadata = metadata
        self.task = task
        self.steps = steps

    async def run(self, client_id: int, train: Awaitable[TrainResult]) -> tuple[bool, str]:
        """Take part in the round while ``train`` runs; the server's verdict on the input."""
        secure = self.task.secure
        setup = secagg.setup_from_proto(secure.setup)
        if setup.client_id != client_id:
            raise SecureTaskError(f"secure setup is for client {setup.client_id}, not {client_id}")
        plan = SecurePlan(
            weighted=secure.weighted,
            clip_norm=secure.clip_norm or None,
            max_weight=secure.max_weight,
        )
        protocol = SecAggClient(setup)
        training = asyncio.ensure_future(train)
        try:
            await self._send(keys=secagg.advert_to_proto(protocol.advertise()))
            keys = await self._next("keys")
            adverts = [secagg.advert_from_proto(a) for a in keys.keys.adverts]
            shares = protocol.share_keys(adverts)
            delivery = deploy_pb2.ShareDelivery(shares=[secagg.share_to_proto(s) for s in shares])
            await self._send(shares=delivery)
            incoming = await self._next("shares")
            protocol.receive_shares([secagg.share_from_proto(s) for s in incoming.shares.shares])
            result = await training
            masked = await asyncio.to_thread(_masked_input, protocol, plan, result)
            accepted, reason = await self._upload(result, masked.values.tobytes())
            if not accepted:
                return False, reason
            request = await self._next("unmask")
            reply = protocol.unmask(secagg.request_from_proto(request.unmask))
            await self._send(unmask=secagg.reply_to_proto(reply))
            return True, ""
        except (ProtocolViolationError, SecureAggregationError) as exc:
            return False, str(exc)
        except SecureTaskError as exc:
            return False, str(exc)
        finally:
            if not training.done():
                training.cancel()

    async def _send(self, **kind: object) -> None:
        message = deploy_pb2.SecureMessage(
            task_id=self.task.task_id, round_idx=self.task.round_idx, **kind
        )
        ack = await self.stub.SecureSend(message, metadata=self.metadata, timeout=60)
        if not ack.accepted:
            raise SecureTaskError(f"server refused: {ack.reason}")

    async def _next(self, kind: str) -> deploy_pb2.SecureStep:
        """The server's next step of this task (abort and timeout end the task)."""
        deadline = time.monotonic() + self.task.secure.step_timeout_s + self.task.deadline_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SecureTaskError(f"no {kind} step from the server in time")
            try:
                step = await asyncio.wait_for(self.steps.get(), remaining)
            except TimeoutError:
                continue
            if step.task_id != self.task.task_id:
                continue  # a late step of an earlier task
            which = step.WhichOneof("kind")
            if which == "abort":
                raise SecureTaskError(f"secure round aborted: {step.abort}")
            if which != kind:
                raise SecureTaskError(f"expected the {kind} step, the server sent {which}")
            return step

    async def _upload(self, result: TrainResult, payload: bytes) -> tuple[bool, str]:
        header = deploy_pb2.MaskedInputHeader(
            task_id=self.task.task_id,
            round_idx=self.task.round_idx,
            num_samples=result.num_samples,
            mean_loss=result.loss.mean_loss,
            sum_sq_loss=result.loss.sum_sq_loss,
            samples_seen=result.loss.samples_seen,
        )

        def messages():  # type: ignore[no-untyped-def]
            yield deploy_pb2.MaskedUpload(header=header)
            for chunk in split(payload, _MASKED_CHUNK_BYTES):
                yield deploy_pb2.MaskedUpload(chunk=chunk)

        try:
            ack = await self.stub.SendMaskedInput(messages(), metadata=self.metadata, timeout=600)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNAVAILABLE:
                raise
            return False, error_text(error)
        return ack.accepted, ack.reason


def _masked_input(protocol: SecAggClient, plan: SecurePlan, result: TrainResult):  # type: ignore[no-untyped-def]
    vector = plan.client_vector(result.delta.flat, result.num_samples)
    return protocol.mask(protocol.setup.quantizer.quantize(vector))


def task_train_config(task: deploy_pb2.TrainTask) -> TrainConfig:
    """How ``task`` trains: the run's settings, with the steps the server set for this client.

    ``task.local_steps`` (``round.local_work``) replaces ``local_steps``; 0 keeps them.
    """
    config = TrainConfig(**json.loads(task.train_config_json))
    if task.local_steps:
        config = replace(config, local_steps=int(task.local_steps))
    return config


def train_task(
    local_model: object,
    weights: ModelWeights,
    features: object,
    labels: object,
    task: deploy_pb2.TrainTask,
) -> Awaitable[TrainResult]:
    """Local training of ``task`` in a worker thread (the event loop keeps relaying steps)."""
    config = task_train_config(task)
    return asyncio.to_thread(
        LocalTrainer(config).train, local_model, weights, features, labels, int(task.seed)
    )

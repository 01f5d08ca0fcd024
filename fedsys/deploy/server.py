"""The real aggregator: rounds over live gRPC clients, with the simulator's own parts.

Selection (:class:`~fedsys.selection.base.Selector`), aggregation
(:class:`~fedsys.aggregation.base.Strategy`), validation, compression codecs, round
records and writers are the very objects the simulator uses; this module adds what a
network needs: waiting for clients, measured durations, dropouts, deadlines, and an
atomic checkpoint after every round.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fedsys.aggregation.base import Strategy
from fedsys.aggregation.compression import Compressor, NoCompression
from fedsys.aggregation.validation import UpdateValidator
from fedsys.config.deploy import DeployConfig
from fedsys.config.schema import DeadlineRounds, RunConfig, SyncRounds
from fedsys.core.training import TrainConfig, evaluate
from fedsys.core.update import ClientUpdate
from fedsys.core.weights import ModelWeights
from fedsys.deploy.checkpoint import ServerCheckpoint, config_hash
from fedsys.deploy.feed import StreamingAggregation
from fedsys.deploy.memory import (
    FreeMemoryPacer,
    current_rss_bytes,
    peak_rss_bytes,
    release_large_buffers,
    return_free_memory,
)
from fedsys.deploy.output import DeployWriter
from fedsys.deploy.registry import Assignment, ClientRegistry, Session
from fedsys.deploy.round_state import Arrival, LiveRound
from fedsys.deploy.secure_round import SecureRound, SecureService
from fedsys.deploy.service import AggregatorService, LateUpdateError, straggler_reason
from fedsys.metrics.records import RoundRecord, RunResult, record_from_json
from fedsys.parts.rules import ceil_overcommit, task_seed, wire_bytes
from fedsys.secure.errors import SecureAggregationError
from fedsys.secure.plan import SecurePlan, plan_for
from fedsys.selection.base import Selector
from fedsys.selection.priors import feed_priors
from fedsys.wire import auth
from fedsys.wire.chunks import sha256_hex
from fedsys.wire.protos import deploy_pb2, deploy_pb2_grpc
from fedsys.wire.tensors import weights_to_bytes
from fedsys.wire.transport import ServerSecurity, bind, make_server

_LOGGER = logging.getLogger(__name__)


class DeployError(RuntimeError):
    """The deployment cannot go on (too few clients, bad setup); the message says why."""


@dataclass(frozen=True)
class ModelBlob:
    """One model version as served: its bytes and their checksum, computed once."""

    version: int
    data: bytes
    sha256: str

    @classmethod
    def of(cls, weights: ModelWeights, version: int) -> ModelBlob:
        data = weights_to_bytes(weights)
        return cls(version=version, data=data, sha256=sha256_hex(data))


@dataclass(frozen=True)
class ServerParts:
    """Everything the aggregator runs with, built from a config or by hand."""

    config: RunConfig
    model: nn.Module
    test_features: torch.Tensor
    test_labels: torch.Tensor
    selector: Selector
    strategy: Strategy
    train: TrainConfig
    compressor: Compressor = field(default_factory=NoCompression)
    validator: UpdateValidator = field(default_factory=UpdateValidator)


class AggregatorServer:
    """Federated training rounds over real clients.

    Parameters
    ----------
    parts
        Model, test set, selector, strategy and settings.
    tokens
        Who may connect; client ids are the token file's order.
    output_dir
        Where records, summary, plots, logs and the checkpoint go.
    security
        TLS settings of the listening socket.
    resume
        Continue from ``output_dir``'s checkpoint instead of starting afresh.
    start_at
        Unix time before which no round starts; the run's clock reads 0 then. Emulated
        devices (``fedsys client --profile --epoch``) share it as their trace's epoch.
        A path: wait until a launcher writes that time into the file.
    """

    def __init__(
        self,
        parts: ServerParts,
        tokens: auth.TokenStore,
        output_dir: Path,
        security: ServerSecurity,
        resume: bool = False,
        start_at: float | Path | None = None,
    ) -> None:
        self.parts = parts
        self.config = parts.config
        self.settings: DeployConfig = parts.config.deploy
        self.tokens = tokens
        self.output_dir = output_dir
        self.security = security
        self.resume = resume
        self.start_at = start_at
        self.compressor = parts.compressor
        self.validator = parts.validator
        self.weights = ModelWeights.from_module(parts.model)
        self.strategy_state: Any = None
        self.selector_state: Any = None
        self.update_bytes = 0
        self.model_blob = ModelBlob.of(self.weights, 0)
        self.live_round: LiveRound | None = None
        self.records: list[RoundRecord] = []
        self.next_round = 0
        self.launches = 0
        """Tasks handed out so far (the simulator's launch serial, part of each task's seed)."""
        self.phase = "starting"
        self.port = 0
        self.registry = ClientRegistry([])
        self.upload_slots = asyncio.Semaphore(self.settings.upload_slots)
        self.download_slots = asyncio.Semaphore(self.settings.download_slots)
        self.baseline_rss_bytes = 0
        self.connected_rss_bytes = 0
        self.memory = FreeMemoryPacer()
        self._clock_offset_s = 0.0
        self._clock_start = time.monotonic()
        self.secure_plan: SecurePlan | None = None

    # ------------------------------------------------------------------ clock and status
    def now_s(self) -> float:
        """Seconds of the run so far (continues across a resume)."""
        return self._clock_offset_s + time.monotonic() - self._clock_start

    def client_config_json(self) -> str:
        """The config sections a client builds its model and data shard from."""
        sections = self.config.model_dump(mode="json", include={"seed", "dataset", "model"})
        return json.dumps(sections, sort_keys=True)

    def status(self) -> deploy_pb2.StatusReply:
        """Connected clients and round progress, for ``fedsys status``."""
        live = self.live_round
        last = [r.accuracy for r in self.records if r.accuracy is not None]
        clients = [
            deploy_pb2.ClientStatus(
                client_id=s.client_id,
                name=s.name,
                state="training" if s.assignment else "idle",
                last_seen_s=time.monotonic() - s.last_seen,
            )
            for s in sorted(self.registry.sessions.values(), key=lambda s: s.client_id)
        ]
        return deploy_pb2.StatusReply(
            round_idx=self.next_round,
            rounds=self.config.rounds,
            phase=self.phase,
            assigned=len(live.assignments) if live else 0,
            received=len(live.arrivals) if live else 0,
            accuracy=last[-1] if last else float("nan"),
            clients=clients,
            peak_rss_bytes=peak_rss_bytes(),
            baseline_rss_bytes=self.baseline_rss_bytes,
        )

    # ------------------------------------------------------------------ serving
    async def serve(self, port_file: Path | None = None) -> RunResult:
        """Listen, run every round, tell clients to finish, and return the run's records.

        Raises
        ------
        DeployError
            If not enough clients connect in time.
        """
        release_large_buffers()
        self._prepare()
        server = make_server(
            [auth.TokenAuthInterceptor(self.tokens)],
            max_message_bytes=self.settings.max_message_bytes,
        )
        deploy_pb2_grpc.add_AggregatorServicer_to_server(AggregatorService(self), server)
        if self.secure_plan is not None:
            deploy_pb2_grpc.add_SecureAggregatorServicer_to_server(SecureService(self), server)
        self.port = bind(server, self.settings.host, self.settings.port, self.security)
        await server.start()
        writer = DeployWriter(self.output_dir, self.config)
        writer.start(self.records)
        if port_file is not None:
            writer.write_port(port_file, self.port)
        self.baseline_rss_bytes = peak_rss_bytes()
        _LOGGER.info(
            "aggregator listening",
            extra={
                "port": self.port,
                "round": self.next_round,
                "baseline_rss_mb": round(self.baseline_rss_bytes / 2**20, 1),
            },
        )
        try:
            if self.start_at is not None and not self.resume:
                await self._wait_for_start(self.start_at)
            for round_idx in range(self.next_round, self.config.rounds):
                record = await self._run_round(round_idx)
                self.records.append(record)
                self.next_round = round_idx + 1
                self._checkpoint()
                writer.write_round(record)
                return_free_memory()  # the old model, its blob and the round's buffers
            self.phase = "finished"
            result = RunResult(tuple(self.records), self.config.model_dump(mode="json"))
            writer.finish(
                result,
                {
                    "server_baseline_rss_bytes": self.baseline_rss_bytes,
                    "server_connected_rss_bytes": self.connected_rss_bytes,
                    "server_peak_rss_bytes": peak_rss_bytes(),
                    "model_bytes": self.weights.num_bytes,
                },
            )
            self.registry.broadcast(
                deploy_pb2.Instruction(finish=deploy_pb2.Finish(reason="training complete"))
            )
            await asyncio.sleep(self.settings.finish_grace_s)
            return result
        finally:
            await server.stop(grace=1.0)

    async def _wait_for_start(self, start_at: float | Path) -> None:
        """Hold round 0 until ``start_at``; the run's clock reads 0 then."""
        if isinstance(start_at, Path):
            from fedsys.deploy.emulation import wait_for_epoch

            start_at = await wait_for_epoch(start_at, self.settings.wait_for_clients_s * 5)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        self._clock_start = time.monotonic() - (time.time() - start_at)

    def _prepare(self) -> None:
        """Client ids from the token file; fresh state or the checkpoint's."""
        self.registry = ClientRegistry(self.tokens.names())
        self.registry.on_disconnect.append(self._on_disconnect)
        self.update_bytes = wire_bytes(self.compressor, self.weights)
        self.secure_plan = self._secure_plan()
        if self.resume:
            checkpoint = ServerCheckpoint.load(self.output_dir, self.config)
            self.weights.check_same_layout(checkpoint.weights)
            self.weights = checkpoint.weights
            self.strategy_state = checkpoint.strategy_state
            self.selector_state = checkpoint.selector_state
            self.next_round = checkpoint.next_round
            self.launches = sum(int(row.get("selected", 0)) for row in checkpoint.records)
            self._clock_offset_s = checkpoint.elapsed_s
            self.records = [record_from_json(row) for row in checkpoint.records]
            _LOGGER.info("resumed from checkpoint", extra={"next_round": self.next_round})
        else:
            self.strategy_state = self.parts.strategy.init_state(self.weights)
            self.selector_state = self.parts.selector.init_state()
        self._clock_start = time.monotonic()

    def _secure_plan(self) -> SecurePlan | None:
        """How updates are summed securely, or ``None`` when secure aggregation is off.

        Raises
        ------
        DeployError
            If the strategy needs individual updates.
        """
        settings = self.settings
        if settings.secure_aggregation == "none":
            return None
        try:
            return plan_for(
                self.parts.strategy, settings.secure_max_weight, self.validator.max_norm
            )
        except SecureAggregationError as exc:
            raise DeployError(f"deploy.secure_aggregation: {exc}") from None

    def _checkpoint(self) -> None:
        ServerCheckpoint(
            config_sha256=config_hash(self.config),
            next_round=self.next_round,
            elapsed_s=self.now_s(),
            weights=self.weights,
            strategy_state=self.strategy_state,
            selector_state=self.selector_state,
            records=tuple(r.to_json() for r in self.records),
        ).save(self.output_dir)

    def _on_disconnect(self, session: Session) -> None:
        live = self.live_round
        task = session.assignment
        if live is not None and task is not None and task.round_idx == live.round_idx:
            live.drop(session.client_id)

    # ------------------------------------------------------------------ rounds
    def _round_shape(self) -> tuple[int, int | None, float, int]:
        """(clients to select, arrivals that close the round, time limit, fewest to start)."""
        k = self.config.clients_per_round
        mode = self.config.round
        if isinstance(mode, SyncRounds):
            fewest = self.settings.min_clients or k
            return ceil_overcommit(k, mode.overcommit), k, self.settings.round_timeout_s, fewest
        if isinstance(mode, DeadlineRounds):
            select = ceil_overcommit(k, mode.overcommit)
            fewest = self.settings.min_clients or mode.min_participants
            return select, None, mode.deadline_s, fewest
        raise DeployError(f"round.mode {mode.mode!r} is not supported by the deployment")

    async def _run_round(self, round_idx: int) -> RoundRecord:
        mode = self.config.round
        retries = 0
        self.model_blob = ModelBlob.of(self.weights, round_idx)
        start_s: float | None = None
        while True:
            live = await self._launch(round_idx)
            if start_s is None:  # the round starts when its tasks go out, not while waiting
                start_s, wall = self.now_s(), time.perf_counter()
            _, _, limit_s, _ = self._round_shape()
            self.phase = "training"
            await live.wait(limit_s)
            self.phase = "aggregating"
            async with live.feed_lock:
                live.closed = True
            result = await live.feed.finish()
            short = isinstance(mode, DeadlineRounds) and len(live.arrivals) < mode.min_participants
            self.selector_state = self.parts.selector.feedback(self.selector_state, live.reports())
            if short and mode.on_short_round == "retry" and retries < mode.max_retries:
                retries += 1
                _LOGGER.warning("short round, retrying", extra={"round": round_idx})
                continue
            break
        aggregated = result is not None and not short
        if aggregated:
            assert result is not None
            self.weights, self.strategy_state = result
        accuracy, test_loss = await self._maybe_evaluate(round_idx)
        self.live_round = None
        return self._record(live, round_idx, start_s, wall, aggregated, accuracy, test_loss)

    async def _launch(self, round_idx: int) -> LiveRound:
        """Wait for enough idle clients, select among them and send their tasks."""
        select, target, _, fewest = self._round_shape()
        available = await self._await_clients(select, fewest)
        if not self.connected_rss_bytes:  # connections held, nothing transferred yet
            self.connected_rss_bytes = current_rss_bytes()
        self.selector_state = feed_priors(
            self.parts.selector, self.selector_state, available, *self._priors(available)
        )
        chosen, self.selector_state = self.parts.selector.select(
            self.selector_state, round_idx, available, select, self.now_s()
        )
        serials = {int(c): self.launches + i for i, c in enumerate(chosen)}
        self.launches += len(chosen)
        present = [int(c) for c in chosen if int(c) in self.registry.sessions]
        feed: StreamingAggregation | SecureRound
        if self.secure_plan is None:
            feed = StreamingAggregation(
                self.parts.strategy, self.weights, self.strategy_state, queue_size=1
            )
        else:
            feed = SecureRound(
                self, round_idx, present, self.secure_plan, self.weights, self.strategy_state
            )
        live = LiveRound(round_idx, self.model_blob.version, target, feed)  # type: ignore[arg-type]
        self.live_round = live
        task = self._task_template(round_idx)
        for client in present:
            session = self.registry.sessions[client]
            assignment = Assignment(
                task_id=secrets.token_hex(16),
                client_id=client,
                round_idx=round_idx,
                model_version=self.model_blob.version,
                assigned_at=time.monotonic(),
            )
            instruction = deploy_pb2.Instruction(train=deploy_pb2.TrainTask())
            instruction.train.CopyFrom(task)
            instruction.train.task_id = assignment.task_id
            instruction.train.seed = task_seed(self.config.seed, round_idx, client, serials[client])
            if isinstance(feed, SecureRound):
                instruction.train.secure.CopyFrom(feed.task_for(client, assignment.task_id))
            live.assignments[client] = assignment
            live.sizes[client] = session.num_samples
            self.registry.assign(assignment, instruction)
        if isinstance(feed, SecureRound):
            feed.start(live)
        _LOGGER.info(
            "round started",
            extra={"round": round_idx, "selected": len(live.assignments), "idle": len(available)},
        )
        return live

    def _priors(self, clients: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sample counts and expected round times of ``clients`` (NaN: unknown).

        A round time is estimated as the simulator's clock charges it, from the
        speeds the device reported: model down, the task's samples, update up.
        """
        sizes = np.full(len(clients), np.nan)
        expected = np.full(len(clients), np.nan)
        for i, client in enumerate(clients.tolist()):
            session = self.registry.sessions.get(int(client))
            if session is None:
                continue
            sizes[i] = session.num_samples
            if session.speed is not None:
                compute_s, down_bps, up_bps = session.speed
                samples = self.parts.train.samples_processed(session.num_samples)
                expected[i] = (
                    self.weights.num_bytes / down_bps
                    + samples * compute_s
                    + self.update_bytes / up_bps
                )
        return sizes, expected

    def _task_template(self, round_idx: int) -> deploy_pb2.TrainTask:
        train = dataclasses.asdict(self.parts.train)
        train["proximal_mu"] = max(train["proximal_mu"], self.parts.strategy.client_proximal_mu)
        mode = self.config.round
        return deploy_pb2.TrainTask(
            round_idx=round_idx,
            model_version=self.model_blob.version,
            model_sha256=self.model_blob.sha256,
            model_bytes=len(self.model_blob.data),
            train_config_json=json.dumps(train),
            codec=self.compressor.codec,
            codec_json=json.dumps(self.config.compression.model_dump(mode="json")),
            expected_update_bytes=self.update_bytes,
            deadline_s=mode.deadline_s if isinstance(mode, DeadlineRounds) else 0.0,
        )

    async def _await_clients(self, select: int, fewest: int) -> np.ndarray:
        """Idle clients once enough are connected (see ``deploy.settle_s``)."""
        self.phase = "waiting"
        settings = self.settings
        began = time.monotonic()
        while True:
            self._expire_stale_assignments()
            idle = self.registry.idle_ids()
            waited = time.monotonic() - began
            if len(idle) >= select:
                return idle
            everyone_idle = len(idle) == len(self.registry.sessions)
            settled = everyone_idle or (
                waited >= settings.settle_s
                and (self.registry.busy_count() == 0 or waited >= 4 * settings.settle_s)
            )
            if len(idle) >= max(fewest, 1) and settled:
                return idle
            if waited >= settings.wait_for_clients_s:
                raise DeployError(
                    f"only {len(idle)} idle clients after {settings.wait_for_clients_s:.0f} s; "
                    f"a round needs at least {fewest} (deploy.min_clients)"
                )
            await self.registry.wait_change(min(0.5, settings.settle_s or 0.5))

    def _expire_stale_assignments(self) -> None:
        """Free clients whose task outlived ``round_timeout_s`` (hung, never uploaded)."""
        now = time.monotonic()
        for session in self.registry.sessions.values():
            task = session.assignment
            if task is not None and now - task.assigned_at > self.settings.round_timeout_s:
                self.registry.release(session.client_id, task.task_id)

    async def accept(self, live: LiveRound | None, update: ClientUpdate, task: Assignment) -> None:
        """Count a validated update in its round (or refuse it as late)."""
        if live is None:
            raise LateUpdateError(straggler_reason(task.round_idx))
        async with live.feed_lock:
            if not live.is_open_for(task.round_idx):
                raise LateUpdateError(straggler_reason(task.round_idx))
            await live.feed.add(update)
            live.arrivals.append(
                Arrival(
                    client_id=update.client_id,
                    duration_s=update.duration_s,
                    num_samples=update.num_samples,
                    loss=update.loss,
                    upload_bytes=update.upload_bytes,
                )
            )
            live.notify()

    async def _maybe_evaluate(self, round_idx: int) -> tuple[float | None, float | None]:
        every = self.config.eval.every
        if (round_idx + 1) % every and round_idx + 1 != self.config.rounds:
            return None, None
        parts = self.parts
        result = await asyncio.to_thread(
            evaluate, parts.model, self.weights, parts.test_features, parts.test_labels
        )
        return result.accuracy, result.loss

    def _record(
        self,
        live: LiveRound,
        round_idx: int,
        start_s: float,
        wall: float,
        aggregated: bool,
        accuracy: float | None,
        test_loss: float | None,
    ) -> RoundRecord:
        arrived = {a.client_id for a in live.arrivals}
        stragglers = set(live.assignments) - arrived - set(live.dropped) - live.failed
        samples = sum(a.num_samples for a in live.arrivals if a.loss is not None)
        train_loss = (
            sum(a.loss.mean_loss * a.num_samples for a in live.arrivals if a.loss is not None)
            / samples
            if samples
            else None
        )
        outcome = {c: "straggled" for c in stragglers}
        outcome.update({c: "dropped" for c in live.dropped})
        outcome.update({c: "rejected" for c in live.failed})
        outcome.update({c: "completed" for c in arrived})
        durations = {a.client_id: a.duration_s for a in live.arrivals}
        extra: dict[str, Any] = {
            "aggregated": aggregated,
            "clients": [
                {"client_id": c, "outcome": outcome[c], "duration_s": durations.get(c)}
                for c in sorted(live.assignments)
            ],
        }
        if isinstance(live.feed, SecureRound):
            extra["secure_aggregation"] = live.feed.summary()
        if live.rejected:
            extra["rejected_updates"] = [
                {"client_id": c, "reason": reason} for c, reason in live.rejected
            ]
        end_s = self.now_s()
        _LOGGER.info(
            "round finished",
            extra={
                "round": round_idx,
                "participants": len(arrived),
                "accuracy": accuracy,
                "peak_rss_mb": round(peak_rss_bytes() / 2**20, 1),
            },
        )
        return RoundRecord(
            round_idx=round_idx,
            start_s=start_s,
            end_s=end_s,
            wall_s=time.perf_counter() - wall,
            selected=len(live.assignments),
            participants=len(arrived) if aggregated else 0,
            dropouts=len(live.dropped),
            stragglers=len(stragglers),
            rejected=len(live.rejected),
            bytes_down=live.bytes_down,
            bytes_up=sum(a.upload_bytes for a in live.arrivals),
            train_loss=train_loss,
            accuracy=accuracy,
            test_loss=test_loss,
            extra=extra,
        )

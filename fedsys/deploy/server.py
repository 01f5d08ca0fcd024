"""The real aggregator: rounds over live gRPC clients, with the simulator's own parts.

Selection (:class:`~fedsys.selection.base.Selector`), aggregation
(:class:`~fedsys.aggregation.base.Strategy`), validation, compression codecs, round
records and the run-folder writer are the very objects the simulator uses. The server
is three rooms: its state (:class:`~fedsys.deploy.state.ServerState`), which the gRPC
handlers are given; the round logic (:mod:`fedsys.deploy.rounds`); and this module,
which sets them up, serves them, and persists the state after every round.

The event loop never waits on work that grows with the model: loading and writing the
checkpoint, the round files, the summary and the plots run in a worker thread, awaited
in order (round ``r``'s checkpoint is on disk before round ``r + 1`` changes anything).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from pathlib import Path

from fedsys.core.threads import num_parameters, planned_threads
from fedsys.deploy.checkpoint import ServerCheckpoint, config_hash, training_keys
from fedsys.deploy.loop_lag import LoopLag
from fedsys.deploy.memory import peak_rss_bytes, release_large_buffers, return_free_memory
from fedsys.deploy.registry import ClientRegistry
from fedsys.deploy.rounds import drop_on_disconnect, run_round
from fedsys.deploy.secure_round import SecureService
from fedsys.deploy.service import AggregatorService
from fedsys.deploy.state import DeployError, ModelBlob, ServerParts, ServerState
from fedsys.deploy.status import StatusSampler, TransferCounter
from fedsys.metrics.records import RoundRecord, RunResult, record_from_json
from fedsys.metrics.run_folder import STATUS_FILE, RunFolder
from fedsys.parts.rules import wire_bytes
from fedsys.secure.errors import SecureAggregationError
from fedsys.secure.plan import SecurePlan, plan_for
from fedsys.wire import auth
from fedsys.wire.protos import deploy_pb2, deploy_pb2_grpc
from fedsys.wire.transport import ServerSecurity, bind, make_server

__all__ = ["AggregatorServer", "DeployError", "ModelBlob", "ServerParts", "ServerState"]

_LOGGER = logging.getLogger(__name__)


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
    overwrite
        Replace the run files of another run in ``output_dir`` (without it, such a
        folder is refused unless resuming).
    """

    def __init__(
        self,
        parts: ServerParts,
        tokens: auth.TokenStore,
        output_dir: Path,
        security: ServerSecurity,
        resume: bool = False,
        start_at: float | Path | None = None,
        overwrite: bool = False,
    ) -> None:
        self.parts = parts
        self.tokens = tokens
        self.output_dir = output_dir
        self.security = security
        self.resume = resume
        self.start_at = start_at
        self.overwrite = overwrite
        self.state = ServerState.of(parts, tokens)
        """What the handlers are given and the rounds advance."""
        self.loop_lag = LoopLag()
        """How late the server's event loop ran, from listening to the last round."""

    def run_folder(self) -> RunFolder:
        """The writer of this run's output folder."""
        config = self.parts.config
        return RunFolder(
            self.output_dir,
            config.model_dump(mode="json"),
            target_accuracy=config.target_accuracy,
            label=f"deploy ({config.selector.name})",
            csv=config.metrics.csv,
            tensorboard=config.metrics.tensorboard,
            summary_fields={
                "runtime": "deploy",
                "time_unit": "wall seconds",
                "torch_threads": planned_threads(
                    config.sim.threads, num_parameters(self.parts.model)
                ),
            },
            clock="wall",
        )

    def handlers(self) -> list[object]:
        """The gRPC servicers, each given the server's state."""
        services: list[object] = [AggregatorService(self.state)]
        if self.state.secure_plan is not None:
            services.append(SecureService(self.state))
        return services

    # ------------------------------------------------------------------ serving
    async def serve(self, port_file: Path | None = None) -> RunResult:
        """Listen, run every round, tell clients to finish, and return the run's records.

        Raises
        ------
        DeployError
            If not enough clients connect in time.
        OutputExistsError
            If ``output_dir`` holds another run and neither resuming nor overwriting.
        """
        started = time.monotonic()
        release_large_buffers()
        state = self.state
        writer = self.run_folder()
        await asyncio.to_thread(self._prepare, writer)
        state.registry = ClientRegistry(self.tokens.names())
        state.registry.on_disconnect.append(functools.partial(drop_on_disconnect, state))
        state.clock.restart()
        server = make_server(
            [auth.TokenAuthInterceptor(self.tokens)],
            max_message_bytes=state.settings.max_message_bytes,
        )
        services = self.handlers()
        transfers = TransferCounter()
        transfers.wrap(services[0])
        deploy_pb2_grpc.add_AggregatorServicer_to_server(services[0], server)
        if len(services) > 1:
            deploy_pb2_grpc.add_SecureAggregatorServicer_to_server(services[1], server)
        state.port = bind(server, state.settings.host, state.settings.port, self.security)
        await server.start()
        self.loop_lag.start()
        sampler = StatusSampler(state, self.output_dir / STATUS_FILE, transfers)
        sampler.start()
        if port_file is not None:
            await asyncio.to_thread(writer.write_port, port_file, state.port)
        state.baseline_rss_bytes = peak_rss_bytes()
        _LOGGER.info(
            "aggregator listening",
            extra={
                "port": state.port,
                "round": state.next_round,
                "baseline_rss_mb": round(state.baseline_rss_bytes / 2**20, 1),
            },
        )
        try:
            if self.start_at is not None and not self.resume:
                await self._wait_for_start(self.start_at)
            for round_idx in range(state.next_round, state.config.rounds):
                record = await run_round(state, round_idx)
                state.records.append(record)
                state.next_round = round_idx + 1
                await asyncio.to_thread(self._persist, writer, self._checkpoint(), record)
            return await self._finish(writer, time.monotonic() - started)
        finally:
            await sampler.stop()
            await self.loop_lag.stop()
            writer.close()
            await server.stop(grace=1.0)

    async def _finish(self, writer: RunFolder, elapsed_s: float) -> RunResult:
        """Summary and plots (in a thread), then tell every client to finish.

        ``elapsed_s``: wall seconds since this server process started serving.
        """
        state = self.state
        state.phase = "finished"
        result = RunResult(tuple(state.records), state.config.model_dump(mode="json"))
        lag = self.loop_lag.percentiles_ms()
        await asyncio.to_thread(
            writer.finish,
            result,
            elapsed_s=elapsed_s,
            server_baseline_rss_bytes=state.baseline_rss_bytes,
            server_connected_rss_bytes=state.connected_rss_bytes,
            server_peak_rss_bytes=peak_rss_bytes(),
            model_bytes=state.weights.num_bytes,
            server_loop_lag_p50_ms=lag["p50"],
            server_loop_lag_p99_ms=lag["p99"],
            server_loop_lag_max_ms=lag["max"],
        )
        _LOGGER.info("event loop lag", extra={f"{k}_ms": v for k, v in lag.items()})
        state.registry.broadcast(
            deploy_pb2.Instruction(finish=deploy_pb2.Finish(reason="training complete"))
        )
        await asyncio.sleep(state.settings.finish_grace_s)
        return result

    async def _wait_for_start(self, start_at: float | Path) -> None:
        """Hold round 0 until ``start_at``; the run's clock reads 0 then."""
        if isinstance(start_at, Path):
            from fedsys.deploy.emulation import wait_for_epoch

            wait_s = self.state.settings.wait_for_clients_s * 5
            start_at = await wait_for_epoch(start_at, wait_s)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        self.state.clock.read_zero_at(start_at)

    def _prepare(self, writer: RunFolder) -> None:
        """Claim the output folder; fresh state or the checkpoint's (runs in a thread).

        Raises
        ------
        CheckpointError
            If resuming and the folder's checkpoint is missing or another config's.
        OutputExistsError
            If not resuming and the folder holds another run (unless overwriting).
        """
        state = self.state
        state.update_bytes = wire_bytes(state.compressor, state.weights)
        state.secure_plan = self._secure_plan()
        if self.resume:
            checkpoint = ServerCheckpoint.load(self.output_dir, state.config)
            state.weights.check_same_layout(checkpoint.weights)
            state.weights = checkpoint.weights
            state.strategy_state = checkpoint.strategy_state
            state.selector_state = checkpoint.selector_state
            state.next_round = checkpoint.next_round
            state.launches = sum(int(row.get("selected", 0)) for row in checkpoint.records)
            state.clock.offset_s = checkpoint.elapsed_s
            state.records = [record_from_json(row) for row in checkpoint.records]
            writer.write_config()
            _LOGGER.info("resumed from checkpoint", extra={"next_round": state.next_round})
        else:
            writer.start(overwrite=self.overwrite)
            state.strategy_state = self.parts.strategy.init_state(state.weights)
            state.selector_state = self.parts.selector.init_state()
        writer.resume(state.records)

    def _secure_plan(self) -> SecurePlan | None:
        """How updates are summed securely, or ``None`` when secure aggregation is off.

        Raises
        ------
        DeployError
            If the strategy needs individual updates.
        """
        settings = self.state.settings
        if settings.secure_aggregation == "none":
            return None
        try:
            return plan_for(
                self.parts.strategy, settings.secure_max_weight, self.state.validator.max_norm
            )
        except SecureAggregationError as exc:
            raise DeployError(f"deploy.secure_aggregation: {exc}") from None

    def _checkpoint(self) -> ServerCheckpoint:
        """The state after the last round, as one value (cheap: it refers, never copies)."""
        state = self.state
        return ServerCheckpoint(
            config_sha256=config_hash(state.config),
            next_round=state.next_round,
            elapsed_s=state.now_s(),
            weights=state.weights,
            strategy_state=state.strategy_state,
            selector_state=state.selector_state,
            records=tuple(r.to_json() for r in state.records),
            config=training_keys(state.config),
        )

    def _persist(
        self, writer: RunFolder, checkpoint: ServerCheckpoint, record: RoundRecord
    ) -> None:
        """Checkpoint atomically, then append the round (runs in a thread)."""
        checkpoint.save(self.output_dir)
        writer.write_round(record)
        return_free_memory()  # the old model, its blob and the round's buffers

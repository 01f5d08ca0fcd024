"""The mutable state of one simulated run and the primitives round modes are built from.

A round mode (sync, deadline, async) decides *when* to select, close and aggregate;
the engine knows *how*: pick clients, plan their timelines on the virtual clock,
train the ones whose updates count, aggregate, evaluate, and tell the selector.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from fedsys.aggregation.base import Strategy
from fedsys.aggregation.compression import Compressor, NoCompression
from fedsys.aggregation.validation import InvalidUpdateError, UpdateValidator, filter_valid
from fedsys.core.training import EvalResult, LocalTrainer, evaluate, fold_seed
from fedsys.core.update import ClientId, ClientReport, ClientUpdate, ReportOutcome
from fedsys.core.weights import ModelWeights
from fedsys.data.federated import FederatedDataset
from fedsys.parts.rules import wire_bytes
from fedsys.secure.cost import SecureCostModel
from fedsys.selection.availability import UsesAvailability, feed_availability
from fedsys.selection.base import Selector
from fedsys.selection.priors import feed_priors
from fedsys.sim.backends.base import BackendSession, TrainingParts, TrainJob
from fedsys.sim.backends.sequential import SequentialSession
from fedsys.sim.device import weights_on
from fedsys.sim.events import EventQueue, Launch, VirtualClock, outcome_event
from fedsys.sim.timeline import plan_launches
from fedsys.sim.work import WorkPlan, partial_upload
from fedsys.traces.fleet import DeviceFleet
from fedsys.traces.timing import client_round_time


@dataclass(frozen=True)
class EngineParts:
    """The fixed ingredients of a run, as handed to the engine."""

    dataset: FederatedDataset
    model: nn.Module
    fleet: DeviceFleet
    selector: Selector
    strategy: Strategy
    trainer: LocalTrainer
    seed: int
    model_cost_ratio: float = 1.0
    idle_step_s: float = 60.0
    compressor: Compressor = field(default_factory=NoCompression)
    validator: UpdateValidator = field(default_factory=UpdateValidator)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    """Where ``model`` and ``dataset`` live; server-side weights stay on the CPU."""
    secure_cost: SecureCostModel | None = None
    """Charge secure aggregation's extra compute, bytes and round trips (``None``: off)."""
    server_round_s: float = 0.0
    """Server seconds a round costs besides its clients' (calibrated, ``clock`` section)."""
    server_update_s: float = 0.0
    """Server seconds each aggregated update costs (calibrated, ``clock`` section)."""
    client_task_s: float = 0.0
    """Seconds each task costs a client beyond its profile (calibrated, ``clock`` section)."""


def training_parts(parts: EngineParts) -> TrainingParts:
    """The subset of a run's parts a training backend works with."""
    return TrainingParts(
        model=parts.model, dataset=parts.dataset, trainer=parts.trainer, device=parts.device
    )


@dataclass(frozen=True)
class TrainedRound:
    """Aggregation outcome of one set of updates."""

    participants: int
    train_loss: float | None
    rejected: tuple[InvalidUpdateError, ...] = ()
    accepted: frozenset[int] = frozenset()
    """Identities (``id()``) of the updates that passed validation and were aggregated."""

    def outcome_of(self, update: ClientUpdate | None) -> ReportOutcome:
        """``completed`` if ``update`` was aggregated, ``rejected`` if it was refused."""
        return "completed" if update is not None and id(update) in self.accepted else "rejected"


class Engine:
    """Run-time state (weights, strategy and selector state, clock, queue) of one run."""

    def __init__(self, parts: EngineParts, session: BackendSession | None = None) -> None:
        self.parts = parts
        self.session = session if session is not None else SequentialSession(training_parts(parts))
        """The training backend's session (sequential unless the simulator opened another)."""
        self.weights = weights_on(ModelWeights.from_module(parts.model), torch.device("cpu"))
        self.strategy_state = parts.strategy.init_state(self.weights)
        self.selector_state = parts.selector.init_state()
        self.clock = VirtualClock()
        self.queue = EventQueue()
        sizes = parts.dataset.client_sizes
        if len(sizes) > parts.fleet.num_clients:
            raise ValueError(
                f"dataset has {len(sizes)} clients but the device fleet only "
                f"{parts.fleet.num_clients}"
            )
        self.samples_processed = parts.trainer.config.samples_processed(sizes)
        self.has_data = sizes > 0
        self.population = int(self.has_data.sum())
        self.last_population = 0
        self.draw: tuple[int, int] | None = None
        self.busy: set[ClientId] = set()
        self.launches = 0
        self.residuals: dict[ClientId, torch.Tensor] = {}
        self.mode_state: Any = None
        """What a round mode keeps across aggregations (async snapshots), checkpointed."""
        self.compresses = not isinstance(parts.compressor, NoCompression)
        self.update_bytes = wire_bytes(parts.compressor, self.weights)
        self.expected_s = self.expected_durations()
        """Each client's round time by its profile: its prior once it is first available."""

    def snapshot(self) -> dict[str, Any]:
        """Everything that evolves during a run, as values a checkpoint can hold."""
        entries, next_seq = self.queue.snapshot()
        return {
            "weights": self.weights,
            "strategy_state": self.strategy_state,
            "selector_state": self.selector_state,
            "clock_s": self.clock.now_s,
            "queue": entries,
            "queue_next_seq": next_seq,
            "busy": set(self.busy),
            "launches": self.launches,
            "residuals": dict(self.residuals),
            "mode_state": self.mode_state,
            "last_population": self.last_population,
            "draw": self.draw,
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Continue from a :meth:`snapshot` of a run with the same parts.

        Raises
        ------
        ValueError
            If the snapshot's weights do not fit this run's model.
        """
        self.weights.check_same_layout(snapshot["weights"])
        self.weights = snapshot["weights"]
        self.strategy_state = snapshot["strategy_state"]
        self.selector_state = snapshot["selector_state"]
        self.clock = VirtualClock(float(snapshot["clock_s"]))
        self.queue = EventQueue.restore(snapshot["queue"], snapshot["queue_next_seq"])
        self.busy = set(snapshot["busy"])
        self.launches = int(snapshot["launches"])
        self.residuals = dict(snapshot["residuals"])
        self.mode_state = snapshot["mode_state"]
        self.last_population = int(snapshot["last_population"])
        self.draw = snapshot["draw"]

    def expected_durations(self) -> np.ndarray:
        """Each client's round time from its device profile, before it ever trains."""
        ids = np.arange(len(self.has_data), dtype=np.int64)
        down, compute, up = client_round_time(
            self.parts.fleet,
            ids,
            self.samples_processed,
            self.weights.num_bytes,
            self.update_bytes,
            self.parts.model_cost_ratio,
        )
        return down + compute + up

    # ------------------------------------------------------------------ selection
    def available(self) -> np.ndarray:
        """Ids of clients online now that hold data and are not already training."""
        online = self.parts.fleet.available_clients(self.clock.now_s)
        online = online[online < len(self.has_data)]
        online = online[self.has_data[online]]
        if self.busy:
            online = online[~np.isin(online, np.fromiter(self.busy, dtype=np.int64))]
        return online

    def select(self, round_idx: int, k: int) -> list[ClientId]:
        """Ask the selector for ``k`` of the available clients."""
        available = self.available()
        self.last_population = len(available)
        if len(available) == 0 or k <= 0:
            return []
        sizes = self.parts.dataset.client_sizes[available].astype(np.float64)
        selector, now, hint = self.parts.selector, self.clock.now_s, self.expected_s[available]
        state = feed_priors(selector, self.selector_state, available, sizes, hint)
        if isinstance(selector, UsesAvailability):  # the trace's session ends
            until = self.parts.fleet.online_until(available, now)
            state = feed_availability(selector, state, available, until, now)
        chosen, self.selector_state = selector.select(state, round_idx, available, k, now)
        return chosen

    def select_waiting(
        self, round_idx: int, k: int, max_wait_s: float = 30 * 86400.0
    ) -> list[ClientId]:
        """Select ``k`` clients, letting virtual time pass while nobody usable is online.

        Raises
        ------
        RuntimeError
            If no client comes online within ``max_wait_s`` virtual seconds.
        """
        waited_s = 0.0
        chosen = self.select(round_idx, k)
        while not chosen:
            if waited_s >= max_wait_s:
                raise RuntimeError(
                    f"no client with data came online within {max_wait_s:.0f} virtual seconds "
                    f"(t={self.clock.now_s:.0f}s): check the availability trace"
                )
            self.clock.advance_to(self.clock.now_s + self.parts.idle_step_s)
            waited_s += self.parts.idle_step_s
            chosen = self.select(round_idx, k)
        return chosen

    def select_poisson(
        self, round_idx: int, rate: float, max_wait_s: float = 30 * 86400.0
    ) -> list[ClientId]:
        """Each available client joins independently with probability ``rate``.

        Poisson participation: the selector is not asked, and the draw may be empty
        (a DP round then releases noise only). Virtual time passes only while nobody
        usable is online at all.

        Raises
        ------
        RuntimeError
            If no client comes online within ``max_wait_s`` virtual seconds.
        """
        waited_s = 0.0
        available = self.available()
        while len(available) == 0:
            if waited_s >= max_wait_s:
                raise RuntimeError(
                    f"no client with data came online within {max_wait_s:.0f} virtual seconds "
                    f"(t={self.clock.now_s:.0f}s): check the availability trace"
                )
            self.clock.advance_to(self.clock.now_s + self.parts.idle_step_s)
            waited_s += self.parts.idle_step_s
            available = self.available()
        self.last_population = len(available)
        rng = np.random.default_rng([self.parts.seed, round_idx, _POISSON_STREAM])
        joined = available[rng.random(len(available)) < rate]
        return [int(c) for c in joined]

    def note_draw(self, population: int, sampled: int) -> None:
        """Record how the next aggregation's clients were drawn; tell a strategy that asks."""
        self.draw = (int(population), int(sampled))
        with_draw = getattr(self.parts.strategy, "with_draw", None)
        if with_draw is not None:
            self.strategy_state = with_draw(self.strategy_state, population, sampled)

    # ------------------------------------------------------------------ timelines
    def launch(
        self, client_ids: Sequence[ClientId], version: int, work: WorkPlan | None = None
    ) -> list[Launch]:
        """Plan each client's timeline from now (``work``: per-client steps and uploads,
        see :mod:`fedsys.sim.work`) and schedule its outcome event."""
        if not client_ids:
            return []
        launches = plan_launches(self, client_ids, version, work)
        for launch in launches:
            self.launches += 1
            self.queue.push(*outcome_event(launch))
            self.busy.add(launch.client_id)
        return launches

    def upload_bytes(self) -> int:
        """Bytes one client update occupies on the wire (after compression)."""
        return self.update_bytes

    def release(self, launch: Launch) -> None:
        """The client is no longer training (arrived, dropped or discarded)."""
        self.busy.discard(launch.client_id)

    # ------------------------------------------------------------------ training
    def train(self, launch: Launch, start: ModelWeights | None = None) -> ClientUpdate:
        """Really train one client from ``start`` (default: the current global weights)."""
        ((_, update),) = self.train_many([launch], None if start is None else [start])
        return update

    def train_many(
        self, launches: Sequence[Launch], starts: Sequence[ModelWeights] | None = None
    ) -> Iterator[tuple[Launch, ClientUpdate]]:
        """Hand all ``launches`` to the training backend at once; stream their updates.

        ``starts`` gives each launch's start weights (default: the current global
        weights). Pairs come in the backend's deterministic order; compression (with
        the client's residual) happens here, in that order, as each result arrives.
        """
        parts = self.parts
        jobs = [
            TrainJob(
                client_id=launch.client_id,
                start=self.weights if starts is None else starts[i],
                seed=(parts.seed, launch.version, launch.client_id, launch.serial),
                local_steps=launch.local_steps,
            )
            for i, launch in enumerate(launches)
        ]
        for index, result in self.session.train(jobs):
            launch = launches[index]
            delta = weights_on(result.delta, torch.device("cpu"))
            if self.compresses:
                delta = self.compress(launch, delta)
            elif launch.upload_fraction < 1.0:  # a slow client's top-k share (PyramidFL)
                delta = partial_upload(delta, launch)
            yield launch, ClientUpdate(
                client_id=launch.client_id,
                delta=delta,
                num_samples=result.num_samples,
                duration_s=launch.duration_s,
                loss=result.loss,
                round_idx=launch.version,
                upload_bytes=launch.bytes_up,
            )

    def compress(self, launch: Launch, delta: ModelWeights) -> ModelWeights:
        """What the server decodes from the client's upload; the residual stays on the client.

        Raises
        ------
        RuntimeError
            If the encoded size differs from the size the virtual clock charged.
        """
        compressor = self.parts.compressor
        client = launch.client_id
        encoded, residual = compressor.encode(  # the seed a deployed client gets for this task
            delta,
            self.residuals.get(client),
            seed=fold_seed([self.parts.seed, launch.version, client, launch.serial]),
        )
        if residual is None:
            self.residuals.pop(client, None)
        else:
            self.residuals[client] = residual
        if encoded.num_bytes != launch.bytes_up:
            raise RuntimeError(
                f"{encoded.codec} encoded {encoded.num_bytes} bytes but the clock charged "
                f"{launch.bytes_up}: the codec's size must not depend on the values"
            )
        return compressor.decode(encoded, like=self.weights)

    def aggregate(self, updates: Iterable[ClientUpdate]) -> TrainedRound:
        """Stream ``updates`` into the strategy and install the new global weights.

        Returns how many updates were used, their sample-weighted mean training loss
        and the rejected ones. With no valid update, the weights stay unchanged.
        """
        rejected: list[InvalidUpdateError] = []
        tally = _Tally()
        valid = filter_valid(updates, self.weights, self.parts.validator, rejected=rejected)
        counted = tally.watch(valid)
        first = next(counted, None)
        strategy = self.parts.strategy
        if first is not None:
            self.weights, self.strategy_state = strategy.aggregate(
                self.weights, _chain_first(first, counted), self.strategy_state
            )
        elif getattr(strategy, "releases_empty_rounds", False):
            self.weights, self.strategy_state = strategy.aggregate(
                self.weights, iter(()), self.strategy_state
            )
        return TrainedRound(
            tally.count, tally.mean_loss(), tuple(rejected), frozenset(tally.accepted)
        )

    def accounting(self, result: TrainedRound) -> dict[str, object]:
        """Per-round extras for the record: rejected updates and privacy spent."""
        extra: dict[str, object] = {}
        if result.rejected:
            extra["rejected_updates"] = [
                {"client_id": error.client_id, "reason": error.reason} for error in result.rejected
            ]
        if self.draw is not None:
            extra["draw"] = list(self.draw)
        epsilon = getattr(self.strategy_state, "epsilon", None)
        if epsilon is not None:
            extra["epsilon"] = float(epsilon)
        return extra

    def feedback(self, reports: Sequence[ClientReport]) -> None:
        """Tell the selector what the round's clients did."""
        if reports:
            self.selector_state = self.parts.selector.feedback(self.selector_state, reports)

    def evaluate(self) -> EvalResult:
        """Accuracy and loss of the current global model on the held-out test set."""
        dataset = self.parts.dataset
        return evaluate(
            self.parts.model,
            self.weights,
            dataset.test_features,
            dataset.test_labels,
            self.parts.trainer.loss_fn,
        )


def report_for(
    launch: Launch, outcome: ReportOutcome, update: ClientUpdate | None = None
) -> ClientReport:
    """A selector report saying how the round ended for the client.

    Loss statistics travel only with a completed (aggregated) update. A dropout
    reports the time it stayed online and no processed samples; everyone else its
    full duration and the samples its local training went through.
    """
    completed = outcome == "completed"
    dropped = outcome == "dropped"
    return ClientReport(
        client_id=launch.client_id,
        round_idx=launch.version,
        duration_s=launch.online_s if dropped else launch.duration_s,
        num_samples=launch.num_samples,
        completed=completed,
        loss=update.loss if completed and update is not None else None,
        outcome=outcome,
        samples_processed=0 if dropped else launch.samples_processed,
    )


class WallTimer:
    """Host seconds spent on a round (metrics only; the simulation never reads it)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def elapsed_s(self) -> float:
        """Seconds since construction."""
        return time.perf_counter() - self.started


class _Tally:
    """Counts updates and their sample-weighted loss as they stream past."""

    def __init__(self) -> None:
        self.count = 0
        self.loss_weighted = 0.0
        self.loss_samples = 0
        self.accepted: set[int] = set()

    def watch(self, updates: Iterable[ClientUpdate]) -> Iterator[ClientUpdate]:
        for update in updates:
            self.count += 1
            self.accepted.add(id(update))
            if update.loss is not None:
                self.loss_weighted += update.loss.mean_loss * update.num_samples
                self.loss_samples += update.num_samples
            yield update

    def mean_loss(self) -> float | None:
        return self.loss_weighted / self.loss_samples if self.loss_samples else None


def _chain_first(first: ClientUpdate, rest: Iterator[ClientUpdate]) -> Iterator[ClientUpdate]:
    yield first
    yield from rest


_POISSON_STREAM = 0x9015
"""Stream key of Poisson participation, apart from the selectors' ``[seed, round]``."""

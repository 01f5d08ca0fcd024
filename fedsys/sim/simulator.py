"""The virtual-clock simulator: a federation of simulated devices that trains for real."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from fedsys import __version__
from fedsys.aggregation.base import Strategy
from fedsys.aggregation.compression import Compressor, NoCompression
from fedsys.aggregation.validation import UpdateValidator
from fedsys.core.threads import (
    ThreadsSetting,
    num_parameters,
    torch_threads,
    use_torch_threads,
)
from fedsys.core.training import LocalTrainer
from fedsys.core.weights import ModelWeights
from fedsys.data.federated import FederatedDataset
from fedsys.metrics.records import RoundRecord, RunResult
from fedsys.parts.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from fedsys.secure.cost import SecureCostModel
from fedsys.selection.base import Selector
from fedsys.sim.backends.base import TrainingBackend
from fedsys.sim.backends.sequential import SequentialBackend
from fedsys.sim.device import dataset_on, model_on, resolve_device
from fedsys.sim.engine import Engine, EngineParts, WallTimer, training_parts
from fedsys.sim.federated_eval import FederatedEvaluator
from fedsys.sim.rounds.base import RoundMode
from fedsys.sim.rounds.sync import SyncRounds
from fedsys.traces.fleet import DeviceFleet

if TYPE_CHECKING:
    from fedsys.config.schema import RunConfig

RoundCallback = Callable[[RoundRecord], None]


class Simulator:
    """Simulate federated training on a device fleet, with time on the fleet's clock.

    Each client really trains the model (PyTorch); its *virtual* duration comes from
    its device profile: model download + local compute + update upload. The round
    mode decides who counts; the strategy aggregates; the selector picks clients.

    Parameters
    ----------
    dataset
        Per-client training data and a held-out test set.
    model
        The ``nn.Module`` to train; its initial weights are the starting point.
    fleet
        One device profile per client (speed, bandwidth, availability).
    selector, strategy
        Participant selection and aggregation rules.
    trainer
        Local training settings.
    round_mode
        Sync with over-commitment, deadline-bound or asynchronous buffered.
    rounds
        Number of aggregations.
    clients_per_round
        K, the number of updates a round aims to aggregate.
    eval_every
        Evaluate the global model every this many rounds (and after the last).
    seed
        Seed of every random stream (mini-batch order; selectors carry their own).
    model_cost_ratio
        Compute cost of the model relative to the trace's reference model.
    compressor
        Client-to-server update codec; its encoded size sets the upload time.
    validator
        Checks every update before aggregation; rejected ones never reach the model.
    evaluator
        Optional federated evaluation on chosen test participants, reported next to
        the central test-set accuracy.
    config
        Settings recorded with the result (the run config, when built from one);
        a resumed run must have the same (``output_dir`` aside).
    checkpoint_every
        Write a checkpoint every this many rounds (0: only after the last round and
        on a requested stop); needs ``checkpoint_path``.
    checkpoint_path
        Where checkpoints go (one file, replaced atomically); ``None``: none.
    device
        ``cpu``, ``cuda`` or ``auto``: where local training and central evaluation
        run (a copy of the model and the data move there once; server-side weights,
        states and checkpoints stay on the CPU).
    backend
        How clients are trained: :class:`~fedsys.sim.backends.SequentialBackend` (the
        default), ``VectorizedBackend`` or ``RayBackend``; opened once per ``run``.
    secure_cost
        Charge secure aggregation's measured cost (extra compute, bytes and round
        trips) on the virtual clock; ``None``: plain aggregation.
    server_round_s, server_update_s
        Server time charged per sync or deadline round and per aggregated update
        (dispatch, receive, aggregate, evaluate), as ``fedsys fidelity --calibrate``
        measures it on a real deployment; 0 by default.
    client_task_s
        Time charged to every client's task beyond its device profile (the
        protocol's messages), measured the same way; 0 by default.
    threads
        PyTorch intra-op threads while the run trains (``auto``: see
        :func:`~fedsys.core.threads.torch_threads`); the previous number is put back
        when ``run`` returns.
    """

    def __init__(
        self,
        *,
        dataset: FederatedDataset,
        model: nn.Module,
        fleet: DeviceFleet,
        selector: Selector,
        strategy: Strategy,
        trainer: LocalTrainer | None = None,
        round_mode: RoundMode | None = None,
        rounds: int = 50,
        clients_per_round: int = 10,
        eval_every: int = 5,
        seed: int = 0,
        model_cost_ratio: float = 1.0,
        compressor: Compressor | None = None,
        validator: UpdateValidator | None = None,
        evaluator: FederatedEvaluator | None = None,
        config: dict[str, Any] | None = None,
        checkpoint_every: int = 0,
        checkpoint_path: str | Path | None = None,
        device: str = "cpu",
        backend: TrainingBackend | None = None,
        secure_cost: SecureCostModel | None = None,
        server_round_s: float = 0.0,
        server_update_s: float = 0.0,
        client_task_s: float = 0.0,
        threads: ThreadsSetting = "auto",
    ) -> None:
        self.dataset = dataset
        self.model = model
        self.fleet = fleet
        self.selector = selector
        self.strategy = strategy
        self.trainer = trainer
        self.round_mode = round_mode
        self.rounds = rounds
        self.clients_per_round = clients_per_round
        self.eval_every = eval_every
        self.seed = seed
        self.model_cost_ratio = model_cost_ratio
        self.compressor = compressor or NoCompression()
        self.validator = validator or UpdateValidator()
        self.evaluator = evaluator
        self.config = config
        self.checkpoint_every = checkpoint_every
        self.checkpoint_path = checkpoint_path
        self.device = device
        self.backend = backend
        self.secure_cost = secure_cost
        self.server_round_s = server_round_s
        self.server_update_s = server_update_s
        self.client_task_s = client_task_s
        self.threads = threads

    @classmethod
    def from_config(cls, config: RunConfig) -> Simulator:
        """Build every component a :class:`RunConfig` describes."""
        from fedsys.sim.assemble import build_simulator

        return build_simulator(config)

    def run(
        self,
        on_round: RoundCallback | None = None,
        resume_from: str | Path | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> RunResult:
        """Run all rounds; ``on_round`` sees each record as soon as it exists.

        Re-entrant: every call starts from the model's weights as they were when the
        call began (the model is trained in place, so they are put back at the end)
        and from fresh strategy and selector states. The records so far are kept in
        ``records_`` and the final weights in ``weights_``, also when a round raises.

        Parameters
        ----------
        on_round
            Called with each record, after evaluation.
        resume_from
            A checkpoint file, or a run folder holding ``checkpoint.pt``: continue that
            run; records and final weights equal an uninterrupted run's.
        should_stop
            Polled after each round; when it returns True the run checkpoints (if
            ``checkpoint_path`` is set) and returns with ``status="interrupted"``.

        Raises
        ------
        CheckpointError
            If ``resume_from`` is unreadable or belongs to another run.
        """
        initial = ModelWeights.from_module(self.model)
        previous_threads = torch.get_num_threads()
        use_torch_threads(self.threads, self.model)
        try:
            return self._run(on_round, resume_from, should_stop)
        finally:
            initial.load_into(self.model)
            torch.set_num_threads(previous_threads)

    def torch_threads(self) -> int:
        """The PyTorch intra-op threads ``run`` trains with."""
        return torch_threads(self.threads, num_parameters(self.model))

    def _run(
        self,
        on_round: RoundCallback | None,
        resume_from: str | Path | None,
        should_stop: Callable[[], bool] | None,
    ) -> RunResult:
        device = resolve_device(self.device)
        parts = EngineParts(
            dataset=dataset_on(self.dataset, device),
            model=model_on(self.model, device),
            fleet=self.fleet,
            selector=self.selector,
            strategy=self.strategy,
            trainer=self.trainer or LocalTrainer(),
            seed=self.seed,
            model_cost_ratio=self.model_cost_ratio,
            compressor=self.compressor,
            validator=self.validator,
            device=device,
            secure_cost=self.secure_cost,
            server_round_s=self.server_round_s,
            server_update_s=self.server_update_s,
            client_task_s=self.client_task_s,
        )
        backend = self.backend or SequentialBackend()
        with backend.open(training_parts(parts)) as session:
            return self._play(Engine(parts, session), on_round, resume_from, should_stop)

    def _play(
        self,
        engine: Engine,
        on_round: RoundCallback | None,
        resume_from: str | Path | None,
        should_stop: Callable[[], bool] | None,
    ) -> RunResult:
        records: list[RoundRecord] = []
        if resume_from is not None:
            records = self._resume(engine, resume_from)
        self.records_: tuple[RoundRecord, ...] = tuple(records)
        self.weights_ = engine.weights
        self.privacy_ = self._privacy(engine)
        mode = self.round_mode or SyncRounds()
        config = self.config or {}
        for record in mode.run(engine, self.rounds, self.clients_per_round, len(records)):
            record = self._maybe_evaluate(engine, record)
            records.append(record)
            self.records_, self.weights_ = tuple(records), engine.weights
            self.privacy_ = self._privacy(engine)
            if on_round is not None:
                on_round(record)
            stop = should_stop is not None and should_stop()
            last = record.round_idx == self.rounds - 1
            if stop or last or self._checkpoint_due(record.round_idx):
                self._checkpoint(engine, records)
            if stop and not last:
                reason = f"stopped after round {record.round_idx} of {self.rounds}"
                return RunResult(
                    tuple(records), config, "interrupted", reason, privacy=self.privacy_
                )
        return RunResult(records=tuple(records), config=config, privacy=self.privacy_)

    def _privacy(self, engine: Engine) -> dict[str, Any] | None:
        report = getattr(self.strategy, "privacy_report", None)
        return None if report is None else dict(report(engine.strategy_state))

    def _checkpoint_due(self, round_idx: int) -> bool:
        every = self.checkpoint_every
        return bool(every) and (round_idx + 1) % every == 0

    def _checkpoint(self, engine: Engine, records: list[RoundRecord]) -> None:
        if self.checkpoint_path is None:
            return
        state = {
            "fedsys_version": __version__,
            "config": self.config,
            "rounds": self.rounds,
            "records": list(records),
            "engine": engine.snapshot(),
        }
        save_checkpoint(Path(self.checkpoint_path), state)

    def _resume(self, engine: Engine, source: str | Path) -> list[RoundRecord]:
        state = load_checkpoint(source)
        if self.config is not None and state.get("config") is not None:
            changed = _changed_keys(state["config"], self.config)
            if changed:
                raise CheckpointError(
                    f"checkpoint {source} is of another run: {', '.join(changed)} differ "
                    "from its config: restore them, or start a new run in another folder"
                )
        records = list(state["records"])
        if len(records) > self.rounds:
            raise CheckpointError(
                f"checkpoint {source} holds {len(records)} rounds, more than {self.rounds}"
            )
        try:
            engine.restore(state["engine"])
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {source} does not fit this run: {exc}") from None
        return records

    def _maybe_evaluate(self, engine: Engine, record: RoundRecord) -> RoundRecord:
        last = record.round_idx == self.rounds - 1
        if (record.round_idx + 1) % self.eval_every and not last:
            return record
        timer = WallTimer()
        result = engine.evaluate()
        extra = record.extra
        if self.evaluator is not None:
            online = engine.parts.fleet.available_clients(engine.clock.now_s)
            online = online[online < self.dataset.num_clients]
            participants = self.evaluator.evaluate(
                self.model, engine.weights, online, record.round_idx, engine.parts.trainer.loss_fn
            )
            extra = {**extra, **participants.as_extra()}
        return replace(
            record,
            accuracy=result.accuracy,
            test_loss=result.loss,
            wall_s=record.wall_s + timer.elapsed_s(),
            extra=extra,
        )


def _changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted config keys whose values differ (``output_dir`` may change on resume)."""
    changed = []
    for key in sorted(set(old) | set(new)):
        if not prefix and key == "output_dir":
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key}")
    return changed

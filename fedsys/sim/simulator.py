"""The virtual-clock simulator: a federation of simulated devices that trains for real."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from torch import nn

from fedsys.aggregation.base import Strategy
from fedsys.aggregation.compression import Compressor, NoCompression
from fedsys.aggregation.validation import UpdateValidator
from fedsys.core.training import LocalTrainer
from fedsys.data.federated import FederatedDataset
from fedsys.metrics.records import RoundRecord, RunResult
from fedsys.selection.base import Selector
from fedsys.sim.engine import Engine, EngineParts, WallTimer
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
        Settings recorded with the result (the run config, when built from one).
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

    @classmethod
    def from_config(cls, config: RunConfig) -> Simulator:
        """Build every component a :class:`RunConfig` describes."""
        from fedsys.sim.build import build_simulator

        return build_simulator(config)

    def run(self, on_round: RoundCallback | None = None) -> RunResult:
        """Run all rounds; ``on_round`` sees each record as soon as it exists."""
        engine = Engine(
            EngineParts(
                dataset=self.dataset,
                model=self.model,
                fleet=self.fleet,
                selector=self.selector,
                strategy=self.strategy,
                trainer=self.trainer or LocalTrainer(),
                seed=self.seed,
                model_cost_ratio=self.model_cost_ratio,
                compressor=self.compressor,
                validator=self.validator,
            )
        )
        mode = self.round_mode or SyncRounds()
        records = []
        for record in mode.run(engine, self.rounds, self.clients_per_round):
            record = self._maybe_evaluate(engine, record)
            records.append(record)
            if on_round is not None:
                on_round(record)
        self.weights_ = engine.weights
        return RunResult(records=tuple(records), config=self.config or {})

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

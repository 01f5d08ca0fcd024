"""Wire a :class:`~fedsys.sim.simulator.Simulator` from a run config.

The objects every runtime shares come from :mod:`fedsys.parts.builders`; this module
adds what only the simulator has (evaluator, round mode, training backend).
"""

from __future__ import annotations

from torch import nn

from fedsys.config.schema import (
    AsyncRounds,
    DeadlineRounds,
    EvalConfig,
    RoundConfig,
    RunConfig,
    SyncRounds,
)
from fedsys.core.weights import ModelWeights
from fedsys.data.federated import FederatedDataset
from fedsys.parts.builders import (
    build_dataset,
    build_fleet,
    build_model,
    build_trainer,
    charge_transfers,
    check_against_data,
    complete_strategy,
    cost_ratio_of,
    secure_cost_model,
)
from fedsys.sim.backends.by_name import make_backend
from fedsys.sim.device import resolve_device
from fedsys.sim.federated_eval import FederatedEvaluator
from fedsys.sim.rounds.base import RoundMode
from fedsys.sim.rounds.setup import build_round_based
from fedsys.sim.simulator import Simulator
from fedsys.traces import DeviceFleet


def build_evaluator(
    config: EvalConfig,
    dataset: FederatedDataset,
    fleet: DeviceFleet,
    model: nn.Module,
    cost_ratio: float,
    seed: int,
) -> FederatedEvaluator | None:
    """The test-participant evaluator ``eval.selection`` asks for (None for ``all``)."""
    if config.selection == "all":
        return None
    reported = None
    if config.selection == "category" and config.category_counts == "reported":
        from fedsys.data.device_stats import label_histograms

        reported = label_histograms(
            dataset.test_label_counts(), epsilon=config.counts_epsilon, seed=seed
        ).per_client
    return FederatedEvaluator(
        config.selection,
        dataset,
        fleet,
        ModelWeights.from_module(model).num_bytes,
        cost_ratio,
        epsilon=config.epsilon,
        confidence=config.confidence,
        samples_per_category=config.samples_per_category,
        budget=config.budget,
        method=config.method,
        seed=seed,
        category_counts=reported,
    )


def build_round_mode(config: RoundConfig, participation: str = "selector") -> RoundMode:
    """The round mode object for the configured ``round.mode``."""
    if isinstance(config, SyncRounds | DeadlineRounds):
        return build_round_based(config, participation)
    if isinstance(config, AsyncRounds):
        from fedsys.sim.rounds.buffered import BufferedAsyncRounds

        return BufferedAsyncRounds(**config.model_dump(exclude={"mode"}))
    raise TypeError(f"unknown round config {config!r}")


def build_simulator(config: RunConfig) -> Simulator:
    """Every component of a run, wired from its config."""
    resolve_device(config.train.device)  # a missing GPU fails before any work
    dataset = build_dataset(config.dataset, config.seed)
    population = check_against_data(config, dataset)
    model = build_model(config.model, dataset, config.seed)
    fleet = build_fleet(config.devices, dataset.num_clients, config.seed)
    fleet = charge_transfers(fleet, config.devices, model)
    cost = cost_ratio_of(config.devices, model)
    strategy = complete_strategy(config, population).build(config.seed)
    return Simulator(
        dataset=dataset,
        model=model,
        fleet=fleet,
        selector=config.selector.build(config.seed),
        strategy=strategy,
        trainer=build_trainer(config.train, strategy),
        round_mode=build_round_mode(config.round, config.participation),
        rounds=config.rounds,
        clients_per_round=config.clients_per_round,
        eval_every=config.eval.every,
        seed=config.seed,
        model_cost_ratio=cost,
        compressor=config.compression.build(),
        validator=config.validation.build(),
        evaluator=build_evaluator(config.eval, dataset, fleet, model, cost, config.seed),
        config=config.model_dump(mode="json"),
        checkpoint_every=config.checkpoint_every,
        device=config.train.device,
        backend=make_backend(
            config.sim.backend,
            chunk_size=config.sim.chunk_size,
            ray_address=config.sim.ray_address,
            ray_workers=config.sim.ray_workers,
            ray_worker_backend=config.sim.ray_worker_backend,
            threads=config.sim.threads,
        ),
        secure_cost=secure_cost_model(config),
        server_round_s=config.clock.server_round_s,
        server_update_s=config.clock.server_update_s,
        client_task_s=config.clock.client_task_s,
        threads=config.sim.threads,
    )

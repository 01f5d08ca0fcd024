"""The federated training task library: local training at sites, a Strategy merge.

Registers ``silo.train`` (a site's local training from the global weights) and builds the
cross-silo FL job (:func:`fedavg_job`). Every site imports this module (see
:data:`~fedsys.silo.task_registry.BUILTIN_TASK_MODULES`).

Round ``r`` runs one ``silo.train`` task per site dataset, each consuming the global
weights of round ``r-1``; the coordinator merges their deltas with any fedsys
:class:`~fedsys.aggregation.base.Strategy` (FedAvg, FedAdam, ...). Weights travel as
raw float32 bytes (:mod:`fedsys.wire.tensors`); their layout comes from the model spec
every site builds locally.

A stateless, element-wise rule (FedAvg, FedProx's server side) is the same rule on any
slice of the weights, so its merge is a :class:`~fedsys.silo.job.BlockMerge`: in Sol
mode the coordinator merges the deltas' blocks as they arrive and pushes the new global
model's blocks to the sites bound to the next round while the last uploads still run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from fedsys import models
from fedsys.aggregation.base import Strategy
from fedsys.aggregation.fedavg import FedAvg
from fedsys.aggregation.fedprox import FedProx
from fedsys.core.threads import ThreadsSetting
from fedsys.core.update import ClientUpdate
from fedsys.core.weights import ModelWeights, TensorSpec
from fedsys.silo.job import Job, JobBuilder
from fedsys.silo.task_registry import Output, TaskContext, task
from fedsys.wire.tensors import layout_of, weights_from_bytes, weights_to_bytes

__all__ = [
    "BLOCKWISE_STRATEGIES",
    "BLOCK_BYTES",
    "StrategyBlocks",
    "StrategyMerge",
    "fedavg_job",
    "model_from_spec",
    "train",
    "weights_from_output",
]


def model_from_spec(spec: Mapping[str, Any]) -> nn.Module:
    """A model from a JSON spec: ``{"kind": "mlp", "input_shape": [256], "num_classes": 10,
    "hidden": [512], "seed": 0}`` (kinds: ``mlp``, ``logistic_regression``, ``cnn1d``).

    Raises
    ------
    ValueError
        If the kind is unknown.
    """
    kind = spec.get("kind", "mlp")
    torch.manual_seed(int(spec.get("seed", 0)))
    shape = [int(d) for d in spec["input_shape"]]
    classes = int(spec["num_classes"])
    if kind == "mlp":
        return models.mlp(shape, classes, hidden=[int(h) for h in spec.get("hidden", [64])])
    if kind == "logistic_regression":
        return models.logistic_regression(shape, classes)
    if kind == "cnn1d":
        return models.cnn1d(shape, classes)
    raise ValueError(f"unknown model kind {kind!r} (mlp, logistic_regression, cnn1d)")


def weights_from_output(output: Output, model: nn.Module) -> ModelWeights:
    """Weights carried by ``output``, checked against ``model``'s layout.

    Raises
    ------
    ValueError
        If the byte count does not match the model.
    """
    layout = layout_of(ModelWeights.from_module(model))
    return weights_from_bytes(output.payload, layout)


@task("silo.train")
def train(ctx: TaskContext, params: Mapping[str, Any], inputs: Sequence[Output]) -> Output:
    """Local training for cross-silo FL: the delta from the global weights in ``inputs[0]``.

    Params: ``model`` (``{"kind": "mlp", "input_shape": [...], "num_classes": n,
    "hidden": [...]}``), ``train`` (:class:`~fedsys.core.training.TrainConfig` fields),
    ``seed``, ``round`` and ``threads`` (PyTorch threads, as ``sim.threads``; default
    ``auto``). The site's dataset holds ``x`` (float32) and ``y`` (int64).
    """
    from fedsys.core.threads import use_torch_threads
    from fedsys.core.training import LocalTrainer, TrainConfig
    from fedsys.silo.worker import pool_size

    model = model_from_spec(params["model"])
    use_torch_threads(params.get("threads", "auto"), model, processes=pool_size())
    start = weights_from_output(inputs[0], model)
    arrays = ctx.arrays()
    features = torch.from_numpy(np.asarray(arrays["x"], dtype=np.float32))
    labels = torch.from_numpy(np.asarray(arrays["y"], dtype=np.int64))
    trainer = LocalTrainer(TrainConfig(**params.get("train", {})))
    seed = [int(params.get("seed", 0)), int(params.get("round", 0))]
    result = trainer.train(model, start, features, labels, seed=seed)
    meta = {"num_samples": result.num_samples, "mean_loss": result.loss.mean_loss}
    return Output(weights_to_bytes(result.delta), meta)


class StrategyMerge:
    """A coordinator merge applying a fedsys Strategy to one round's site deltas.

    Inputs: the previous global weights, then the sites' deltas (with ``num_samples``).
    The strategy's evolving state is kept per round (``states_``), so re-running a merge
    for a round gives the same weights.

    Parameters
    ----------
    strategy
        Any fedsys strategy.
    model_spec
        The model spec sites build (its layout decodes the weights).
    """

    def __init__(self, strategy: Strategy[Any], model_spec: Mapping[str, Any]) -> None:
        self.strategy = strategy
        self.model_spec = dict(model_spec)
        self.states_: dict[int, Any] = {}
        self._layout = layout_of(ModelWeights.from_module(model_from_spec(self.model_spec)))

    def merge_round(self, round_idx: int, inputs: Sequence[Output]) -> Output:
        """New global weights from ``inputs`` = [global weights, deltas...]."""
        weights = weights_from_bytes(inputs[0].payload, self._layout)
        if round_idx - 1 in self.states_:
            state = self.states_[round_idx - 1]
        else:
            state = self.strategy.init_state(weights)
        updates = [
            ClientUpdate(
                client_id=i,
                delta=weights_from_bytes(item.payload, self._layout),
                num_samples=int(item.meta["num_samples"]),
                round_idx=round_idx,
            )
            for i, item in enumerate(inputs[1:])
        ]
        new_weights, state = self.strategy.aggregate(weights, updates, state)
        self.states_[round_idx] = state
        losses = [float(item.meta.get("mean_loss", 0.0)) for item in inputs[1:]]
        meta = {"round": round_idx, "mean_loss": sum(losses) / max(1, len(losses))}
        return Output(weights_to_bytes(new_weights), meta)

    def for_round(self, round_idx: int) -> Any:
        """The merge function of round ``round_idx``."""
        return lambda inputs: self.merge_round(round_idx, inputs)


BLOCKWISE_STRATEGIES: tuple[type[Strategy[Any]], ...] = (FedAvg, FedProx)
"""Strategies (exact types) whose rule is stateless and element-wise."""

BLOCK_BYTES = 64 * 1024
"""Merge grid of block merges: 16384 float32 values."""


class StrategyBlocks:
    """A stateless, element-wise strategy applied to one block of the flat weights.

    Inputs: the previous global weights, then the sites' deltas (with ``num_samples``).

    Parameters
    ----------
    strategy
        A strategy of one of :data:`BLOCKWISE_STRATEGIES`.
    round_idx
        The round merged.
    block_bytes
        The merge grid (a multiple of 4).
    """

    def __init__(self, strategy: Strategy[Any], round_idx: int,
                 block_bytes: int = BLOCK_BYTES) -> None:
        self.strategy = strategy
        self.round_idx = round_idx
        self.block_bytes = block_bytes

    def merge_block(self, inputs: Sequence[memoryview], metas: Sequence[Mapping[str, Any]]
                    ) -> bytes:
        """The new global weights' block from the same block of the weights and deltas."""
        specs = (TensorSpec("block", (len(inputs[0]) // 4,)),)

        def block(view: memoryview) -> ModelWeights:
            return ModelWeights(specs, torch.from_numpy(np.frombuffer(view, "<f4").copy()))

        weights = block(inputs[0])
        updates = [
            ClientUpdate(client_id=i, delta=block(view), num_samples=int(meta["num_samples"]),
                         round_idx=self.round_idx)
            for i, (view, meta) in enumerate(zip(inputs[1:], metas[1:], strict=True))
        ]
        new_weights, _ = self.strategy.aggregate(weights, updates,
                                                 self.strategy.init_state(weights))
        return weights_to_bytes(new_weights)

    def finish_meta(self, metas: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Round and mean site loss, as :meth:`StrategyMerge.merge_round` gives."""
        losses = [float(meta.get("mean_loss", 0.0)) for meta in metas[1:]]
        return {"round": self.round_idx, "mean_loss": sum(losses) / max(1, len(losses))}


def fedavg_job(
    datasets: Sequence[str],
    rounds: int,
    model_spec: Mapping[str, Any],
    train: Mapping[str, Any],
    strategy: Strategy[Any],
    seed: int = 0,
    name: str = "fedavg",
    threads: ThreadsSetting = "auto",
) -> Job:
    """``rounds`` rounds of cross-silo FL over ``datasets`` (one site task per dataset).

    ``threads`` (as ``sim.threads``) are the PyTorch threads of a site's training task.
    Returns a job whose result ``round/<rounds-1>/global`` holds the final weights.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    initial = ModelWeights.from_module(model_from_spec(model_spec))
    job = JobBuilder(name)
    current = job.constant("init", Output(weights_to_bytes(initial), {}))
    merger = StrategyMerge(strategy, model_spec)
    for round_idx in range(rounds):
        params = {"model": dict(model_spec), "train": dict(train), "seed": seed,
                  "round": round_idx, "threads": threads}
        deltas = [
            job.site_task(f"round/{round_idx}/train/{d}", "silo.train", params, [current],
                          dataset=d)
            for d in datasets
        ]
        key = f"round/{round_idx}/global"
        if type(strategy) in BLOCKWISE_STRATEGIES:
            current = job.block_merge(key, StrategyBlocks(strategy, round_idx),
                                      [current, *deltas])
        else:
            current = job.merge(key, merger.for_round(round_idx), [current, *deltas])
    return job.build(results=[current])

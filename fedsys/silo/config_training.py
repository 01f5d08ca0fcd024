"""Training from a fedsys run config across silos: the site's task and one round's job.

A standing federation trains a run config (any model the config builds, any strategy
the simulator offers) across the sites holding the config's dataset, in rounds. Each
round is one silo job (:func:`config_round_job`): one ``silo.train_config`` task per
site, each training the model the config describes from the round's global weights on
the site's own ``x``/``y`` arrays, and one coordinator merge applying the strategy.
Running a round as its own job lets other analysts' jobs share the sites between rounds
and lets the coordinator checkpoint after each one.

The site builds the model from the config's ``model`` section (the same builder the
simulator uses, :func:`fedsys.parts.builders.build_model`), so no code crosses the wire;
which models a site accepts is the site's rule.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from fedsys.aggregation.base import Strategy
from fedsys.config.schema import ModelConfig, TrainSettings
from fedsys.core.update import ClientUpdate
from fedsys.core.weights import ModelWeights
from fedsys.parts.builders import build_model, build_trainer
from fedsys.parts.rules import task_seed
from fedsys.silo.job import Job, JobBuilder
from fedsys.silo.task_registry import Output, TaskContext, task
from fedsys.silo.training_job import BLOCKWISE_STRATEGIES, StrategyBlocks
from fedsys.wire.tensors import layout_of, weights_from_bytes, weights_to_bytes

__all__ = ["config_model", "config_round_job", "train_config"]


def config_model(model: Mapping[str, Any], input_shape: Sequence[int], num_classes: int,
                 seed: int) -> torch.nn.Module:
    """The model a run config's ``model`` section builds for data of this shape."""
    shape = SimpleNamespace(input_shape=tuple(int(d) for d in input_shape),
                            num_classes=int(num_classes))
    return build_model(ModelConfig.model_validate(dict(model)), shape, seed)  # type: ignore[arg-type]


@task("silo.train_config")
def train_config(ctx: TaskContext, params: Mapping[str, Any], inputs: Sequence[Output]
                 ) -> Output:
    """Local training of a run config's model from the global weights in ``inputs[0]``.

    Params: ``model`` (the config's model section), ``input_shape``, ``num_classes``,
    ``train`` (the config's train section), ``proximal_mu`` (the strategy's client
    term), ``seed`` and ``round``. The site's dataset holds ``x`` (float32, the input
    shape per row) and ``y`` (int64 labels).
    """
    model = config_model(params["model"], params["input_shape"], params["num_classes"],
                         int(params.get("seed", 0)))
    start = weights_from_bytes(inputs[0].payload, layout_of(ModelWeights.from_module(model)))
    arrays = ctx.arrays()
    features = torch.from_numpy(np.asarray(arrays["x"], dtype=np.float32))
    labels = torch.from_numpy(np.asarray(arrays["y"], dtype=np.int64))
    settings = TrainSettings.model_validate(dict(params.get("train", {})))
    settings = settings.model_copy(update={"device": "cpu", "proximal_mu": max(
        settings.proximal_mu, float(params.get("proximal_mu", 0.0)))})
    trainer = build_trainer(settings)
    site_key = zlib.crc32(ctx.site.encode())
    seed = task_seed(int(params.get("seed", 0)), int(params.get("round", 0)), site_key, 0)
    result = trainer.train(model, start, features, labels, seed=seed)
    meta = {"num_samples": result.num_samples, "mean_loss": result.loss.mean_loss}
    return Output(weights_to_bytes(result.delta), meta)


def config_round_job(
    name: str,
    weights: ModelWeights,
    strategy: Strategy[Any],
    state: Any,
    sites: Sequence[str],
    dataset: str,
    params: Mapping[str, Any],
    on_state: Callable[[Any], None],
) -> Job:
    """One round: a training task at each of ``sites`` (holding ``dataset``), one merge.

    The merge applies ``strategy`` to the global ``weights`` and the sites' deltas from
    ``state`` (the strategy's evolving state, owned by the caller); the new state goes
    to ``on_state``. A stateless element-wise rule (FedAvg) merges block by block while
    the deltas stream in (Sol). The job's one result, ``global``, holds the new weights.
    """
    layout = layout_of(weights)
    job = JobBuilder(name)
    current = job.constant("init", Output(weights_to_bytes(weights), {}))
    round_idx = int(params.get("round", 0))
    deltas = [job.site_task(f"train/{site}", "silo.train_config", params, [current],
                            dataset=dataset, site=site) for site in sites]
    if type(strategy) in BLOCKWISE_STRATEGIES:
        job.block_merge("global", StrategyBlocks(strategy, round_idx), [current, *deltas])
        return job.build(results=["global"])

    def merge(items: Sequence[Output]) -> Output:
        start = weights_from_bytes(items[0].payload, layout)
        updates = [ClientUpdate(client_id=i, delta=weights_from_bytes(item.payload, layout),
                                num_samples=int(item.meta["num_samples"]), round_idx=round_idx)
                   for i, item in enumerate(items[1:])]
        new_weights, new_state = strategy.aggregate(start, updates, state)
        on_state(new_state)
        losses = [float(item.meta.get("mean_loss", 0.0)) for item in items[1:]]
        return Output(weights_to_bytes(new_weights),
                      {"round": round_idx, "mean_loss": sum(losses) / max(1, len(losses))})

    job.merge("global", merge, [current, *deltas])
    return job.build(results=["global"])

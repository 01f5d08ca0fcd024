"""A fedsys run config trained across the sites of a standing federation.

The coordinator builds what the simulator builds from the config (dataset for its test
set and shapes, model, strategy: :mod:`fedsys.parts.builders`), then runs the config's
rounds, each one silo job (:func:`~fedsys.silo.config_training.config_round_job`) over
every connected site that holds the config's dataset (the sites are the clients, all
of them in every round). After each round it evaluates the global model on the test
set, appends the round to the run folder and checkpoints weights, strategy state and
records, so a coordinator restarted mid-job resumes at the next round. The run folder
is the one every runtime writes (:class:`~fedsys.metrics.run_folder.RunFolder`), plus
``final_weights.npz``.
"""

from __future__ import annotations

import asyncio
import functools
import io
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

from fedsys.config.schema import RunConfig
from fedsys.core.training import evaluate
from fedsys.core.weights import ModelWeights
from fedsys.metrics.records import RoundRecord, RunResult
from fedsys.metrics.run_folder import RunFolder
from fedsys.metrics.writers import atomic_write_bytes
from fedsys.parts.builders import build_dataset, build_model, complete_strategy
from fedsys.parts.checkpoint import load_checkpoint, save_checkpoint
from fedsys.silo.config_training import config_round_job
from fedsys.silo.coordinator import JobResult
from fedsys.silo.job import Job
from fedsys.silo.mode import EngineMode, JobFailedError
from fedsys.wire.tensors import layout_of, weights_from_bytes

__all__ = ["WEIGHTS_FILE", "ConfigTraining"]

WEIGHTS_FILE = "final_weights.npz"
"""The trained model's tensors by name (numpy, no pickle), beside the run files."""

RunSiloJob = Callable[[Job], Awaitable[JobResult]]


class ConfigTraining:
    """One training job of a standing federation.

    Parameters
    ----------
    config
        The validated run config.
    folder
        The job's run folder (on the coordinator).
    run_job
        Runs one silo job (through the fair-share gate, retried per the job's policy).
    site_names
        The connected sites holding a dataset, when the job starts.
    round_sites
        The sites for the next round given the previous round's (a site gone since is
        the job's policy's to handle: fail, or wait for it).
    log, progress
        Where the job tells its analyst what happens.
    """

    def __init__(self, config: RunConfig, folder: Path, run_job: RunSiloJob,
                 site_names: Callable[[str], list[str]],
                 round_sites: Callable[[str, list[str], str], Awaitable[list[str]]],
                 log: Callable[[str], None], progress: Callable[[str], None]) -> None:
        self.config = config
        self.folder = folder
        self.run_job = run_job
        self.site_names = site_names
        self.round_sites = round_sites
        self.log = log
        self.progress = progress

    @property
    def dataset_name(self) -> str:
        """The name under which sites hold the config's training data."""
        return self.config.dataset.name

    async def run(self) -> dict[str, Any]:
        """Train every round (resuming from the checkpoint if there is one); the summary.

        Raises
        ------
        JobFailedError
            If no site holds the dataset, or a round fails.
        """
        config = self.config
        dataset = await asyncio.to_thread(build_dataset, config.dataset, config.seed)
        model = build_model(config.model, dataset, config.seed)
        weights = ModelWeights.from_module(model)
        writer = RunFolder(self.folder, config.model_dump(mode="json"),
                           target_accuracy=config.target_accuracy, label="federation",
                           summary_fields={"runtime": "federation",
                                           "time_unit": "wall seconds"}, clock="wall")
        records: list[RoundRecord] = []
        state: Any = None
        first = 0
        if writer.checkpoint_path.exists():
            saved = load_checkpoint(writer.checkpoint_path)
            weights, state = saved["weights"], saved["strategy_state"]
            records = list(saved["records"])
            first = int(saved["round"]) + 1
            writer.resume(records)
            self.log(f"resumed at round {first} from the checkpoint")
        else:
            writer.start(overwrite=True)
        sites = self.site_names(self.dataset_name)
        if not sites:
            raise JobFailedError(f"no connected site holds training dataset "
                                 f"{self.dataset_name!r}")
        strategy = complete_strategy(config, len(sites)).build(config.seed)
        if state is None:
            state = strategy.init_state(weights)
        clock0 = time.time() - (records[-1].end_s if records else 0.0)
        layout = layout_of(weights)
        params = {"model": config.model.model_dump(mode="json"),
                  "input_shape": list(dataset.input_shape),
                  "num_classes": dataset.num_classes,
                  "train": config.train.model_dump(mode="json"),
                  "proximal_mu": strategy.client_proximal_mu, "seed": config.seed}
        for round_idx in range(first, config.rounds):
            self.progress(f"round {round_idx + 1}/{config.rounds}")
            sites = await self.round_sites(self.dataset_name, sites, f"round {round_idx + 1}")
            holder: dict[str, Any] = {"state": state}
            start_s, wall0 = time.time() - clock0, time.perf_counter()
            job = await asyncio.to_thread(  # encodes the weights: off the event loop
                config_round_job, f"train-r{round_idx}", weights, strategy, state, sites,
                self.dataset_name, {**params, "round": round_idx},
                functools.partial(holder.__setitem__, "state"))
            result = await self.run_job(job)
            output = result.outputs["global"]
            weights = await asyncio.to_thread(weights_from_bytes, output.payload, layout)
            state = holder["state"]
            record = await asyncio.to_thread(
                self._record, round_idx, model, weights, dataset, result, len(sites),
                start_s, time.time() - clock0, time.perf_counter() - wall0,
                float(output.meta.get("mean_loss", 0.0)))
            records.append(record)
            writer.write_round(record)
            await asyncio.to_thread(save_checkpoint, writer.checkpoint_path, {
                "round": round_idx, "weights": weights, "strategy_state": state,
                "records": records})
            accuracy = "" if record.accuracy is None else f", accuracy {record.accuracy:.4f}"
            self.log(f"round {round_idx + 1}/{config.rounds} on {len(sites)} sites in "
                     f"{record.wall_s:.2f} s{accuracy}")
        summary = await asyncio.to_thread(self._finish, writer, records, weights)
        return summary

    def _record(self, round_idx: int, model: Any, weights: ModelWeights, dataset: Any,
                result: JobResult, sites: int, start_s: float, end_s: float,
                wall_s: float, train_loss: float) -> RoundRecord:
        every = self.config.eval.every
        accuracy = test_loss = None
        if (round_idx + 1) % max(1, every) == 0 or round_idx + 1 == self.config.rounds:
            evaluated = evaluate(model, weights, dataset.test_features, dataset.test_labels)
            accuracy, test_loss = evaluated.accuracy, evaluated.loss
        up = sum(r.payload_bytes for r in result.records)
        return RoundRecord(round_idx=round_idx, start_s=start_s, end_s=end_s, wall_s=wall_s,
                           selected=sites, participants=sites,
                           bytes_down=weights.num_bytes * sites, bytes_up=up,
                           train_loss=train_loss, accuracy=accuracy, test_loss=test_loss)

    def _finish(self, writer: RunFolder, records: list[RoundRecord],
                weights: ModelWeights) -> dict[str, Any]:
        result = RunResult(tuple(records), self.config.model_dump(mode="json"))
        summary = writer.finish(result)
        writer.close()
        buffer = io.BytesIO()
        np.savez(buffer, **{name: t.detach().cpu().numpy() for name, t in weights.tensors()})
        atomic_write_bytes(self.folder / WEIGHTS_FILE, buffer.getvalue())
        return summary


def mode_of(policy: str) -> EngineMode:
    """Sol's engine mode (a lost site fails the silo job; the job's policy decides)."""
    return EngineMode.sol(on_site_failure="fail" if policy == "fail" else "rerun")

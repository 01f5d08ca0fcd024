"""Clients trained on a pool of Ray actors (``sim.backend: ray``).

A local Ray cluster is started by default (one CPU per actor); ``sim.ray_address``
joins an existing one instead (every node needs fedsys installed). The model, the
federated dataset and the trainer travel to the actors once per run; each round's
start weights are put in the object store once (one object per distinct start: the
global model, or each async snapshot) and the actors read them by reference, never a
copy per client. Jobs are cut into contiguous shares of at most ``chunk_size``
clients, handed to the actors in turn, and results are read back in job order, so
the order is deterministic and, with ``ray_worker_backend: sequential`` (1 torch
thread per actor), every update equals the sequential backend's bit for bit.

Within the cluster, Ray moves Python objects with its own serializer (cloudpickle for
the model and trainer, zero-copy buffers for arrays): the cluster is one trust domain,
the user's; nothing of this crosses fedsys's own wire.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from fedsys.core.threads import ThreadsSetting, use_torch_threads
from fedsys.core.training import TrainResult
from fedsys.core.update import LossStats
from fedsys.core.weights import ModelWeights, TensorSpec
from fedsys.data.federated import FederatedDataset
from fedsys.sim.backends.base import BackendSession, TrainingBackend, TrainingParts, TrainJob

_INSTALL_HINT = "sim.backend=ray needs Ray: pip install 'fedsys[ray]'"
LOCAL_START_ATTEMPTS = 3
"""Tries to start a local cluster: Ray waits a fixed 30 s for its raylet, which a busy
machine can exceed; the start is retried from scratch (a given cluster's is not)."""
_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Share:
    """Jobs one actor trains in one call: (client, start key, seed, local steps) each."""

    indices: list[int]
    jobs: list[tuple[int, int, tuple[int, ...], int | None]]


class RayTrainer:
    """The actor: opens a local backend on the parts it was sent and trains shares."""

    def __init__(
        self,
        parts: TrainingParts,
        worker_backend: str,
        chunk_size: int,
        threads: ThreadsSetting = "auto",
    ) -> None:
        from fedsys.sim.backends.by_name import make_backend

        # Ray gives an actor of one CPU OMP_NUM_THREADS=1, which caps ``auto``
        self.threads_ = use_torch_threads(threads, parts.model)
        backend = make_backend(worker_backend, chunk_size=chunk_size)
        self.session = backend.open(parts)

    def train(
        self,
        jobs: list[tuple[int, int, tuple[int, ...], int | None]],
        specs: tuple[TensorSpec, ...],
        *starts: np.ndarray,
    ) -> list[tuple[int, np.ndarray, int, tuple[float, float, int], int]]:
        """Train ``jobs`` from ``starts[key]``; return (position, delta, n, loss, steps).

        ``starts`` arrive as the object store's read-only arrays, copied once per call.
        """
        weights = [ModelWeights(specs, torch.from_numpy(np.array(start))) for start in starts]
        local = [
            TrainJob(client_id=client, start=weights[key], seed=seed, local_steps=steps)
            for client, key, seed, steps in jobs
        ]
        out = []
        for position, result in self.session.train(local):
            loss = result.loss
            out.append(
                (
                    position,
                    result.delta.flat.numpy(),
                    result.num_samples,
                    (loss.mean_loss, loss.sum_sq_loss, loss.samples_seen),
                    result.steps,
                )
            )
        return out


class RaySession(BackendSession):
    """A pool of :class:`RayTrainer` actors; shuts down the cluster it started."""

    def __init__(self, ray: Any, actors: list[Any], started: bool, chunk_size: int) -> None:
        self.ray = ray
        self.actors = actors
        self.started = started
        self.chunk_size = chunk_size

    def train(self, jobs: Sequence[TrainJob]) -> Iterator[tuple[int, TrainResult]]:
        """Submit every share, then yield results in job order as they are read back."""
        if not jobs:
            return
        ray = self.ray
        keys: dict[int, int] = {}
        refs = []
        for job in jobs:
            if id(job.start) not in keys:
                keys[id(job.start)] = len(refs)
                refs.append(ray.put(job.start.flat.detach().cpu().numpy()))
        specs = jobs[0].start.specs
        pending = []
        for number, share in enumerate(self._shares(jobs, keys)):
            actor = self.actors[number % len(self.actors)]
            pending.append((share, actor.train.remote(share.jobs, specs, *refs)))
        for share, future in pending:
            for position, delta, num_samples, loss, steps in ray.get(future):
                index = share.indices[position]
                yield (
                    index,
                    TrainResult(
                        delta=jobs[index].start.with_flat(torch.tensor(delta)),
                        num_samples=num_samples,
                        loss=LossStats(
                            mean_loss=loss[0], sum_sq_loss=loss[1], samples_seen=loss[2]
                        ),
                        steps=steps,
                    ),
                )

    def _shares(self, jobs: Sequence[TrainJob], keys: dict[int, int]) -> Iterator[_Share]:
        """Contiguous runs of jobs, spread evenly, at most ``chunk_size`` long."""
        per_actor = -(-len(jobs) // len(self.actors))
        size = max(1, min(self.chunk_size, per_actor))
        for begin in range(0, len(jobs), size):
            chosen = range(begin, min(begin + size, len(jobs)))
            yield _Share(
                indices=list(chosen),
                jobs=[
                    (
                        jobs[i].client_id,
                        keys[id(jobs[i].start)],
                        tuple(jobs[i].seed),
                        jobs[i].local_steps,
                    )
                    for i in chosen
                ],
            )

    def close(self) -> None:
        """Stop the actors, and the local cluster if this session started it."""
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()


class RayBackend(TrainingBackend):
    """``sim.backend: ray``: a pool of actors on a local or existing Ray cluster.

    Parameters
    ----------
    address
        ``ray.init(address=...)`` of an existing cluster; ``None`` starts a local one.
    workers
        Actors (one CPU each); ``None``: one per CPU of the cluster. A local cluster is
        started with this many CPUs.
    worker_backend
        How each actor trains its share: ``sequential`` (bit-identical to the
        sequential backend) or ``vectorized``.
    chunk_size
        Most clients per actor call (and the vectorized chunk inside an actor).
    threads
        PyTorch intra-op threads of each actor (``sim.threads``).
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        worker_backend: str = "sequential",
        chunk_size: int = 256,
        threads: ThreadsSetting = "auto",
    ) -> None:
        self.address = address
        self.workers = workers
        self.worker_backend = worker_backend
        self.chunk_size = chunk_size
        self.threads = threads

    def open(self, parts: TrainingParts) -> RaySession:
        """Start (or join) the cluster, ship the parts once, start the actors.

        Raises
        ------
        RuntimeError
            If Ray is not installed.
        """
        try:
            import ray
        except ImportError:
            raise RuntimeError(_INSTALL_HINT) from None
        started = not ray.is_initialized()
        if started:
            self.start(ray)
        try:
            count = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            cpu = torch.device("cpu")
            portable = replace(
                parts,
                model=_model_on_cpu(parts.model),
                dataset=dataset_on_cpu(parts.dataset),
                device=cpu,
            )
            parts_ref = ray.put(portable)
            actor_class = ray.remote(num_cpus=1)(RayTrainer)
            actors = [
                actor_class.remote(parts_ref, self.worker_backend, self.chunk_size, self.threads)
                for _ in range(count)
            ]
        except BaseException:
            if started:
                ray.shutdown()
            raise
        return RaySession(ray, actors, started, self.chunk_size)

    def start(self, ray: Any) -> None:
        """``ray.init``; a local cluster whose node timed out starting is started again.

        Raises
        ------
        Exception
            Ray's own error when the last attempt fails, or at once for a given address.
        """
        attempts = 1 if self.address is not None else LOCAL_START_ATTEMPTS
        for attempt in range(1, attempts + 1):
            try:
                ray.init(**self._init_kwargs())
                return
            except Exception as exc:
                if attempt == attempts or "timed out during startup" not in str(exc):
                    raise
                ray.shutdown()
                _LOGGER.warning(
                    "the local Ray cluster did not start in time; starting it again",
                    extra={"attempt": attempt + 1, "of": attempts},
                )

    def _init_kwargs(self) -> dict[str, Any]:
        if self.address is not None:
            return {"address": self.address, "log_to_driver": False}
        return {
            "num_cpus": self.workers or os.cpu_count() or 1,
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": "error",
        }


def _model_on_cpu(model: torch.nn.Module) -> torch.nn.Module:
    first = next(iter(model.parameters()), None)
    if first is None or first.device.type == "cpu":
        return model
    return copy.deepcopy(model).cpu()


def dataset_on_cpu(dataset: FederatedDataset) -> FederatedDataset:
    """The dataset with its tensors on the CPU (actors have no GPU of their own)."""
    if dataset.features.device.type == "cpu":
        return dataset
    return replace(
        dataset,
        features=dataset.features.cpu(),
        labels=dataset.labels.cpu(),
        test_features=dataset.test_features.cpu(),
        test_labels=dataset.test_labels.cpu(),
    )

"""Training backends: how a round's client launches are really trained.

``sequential`` (the reference loop), ``vectorized`` (many clients in one batched
``torch.func`` computation) and ``ray`` (a pool of actors on a Ray cluster), chosen by
``sim.backend``. Ray is imported only when a ray session opens.
"""

from fedsys.sim.backends.base import BackendSession, TrainingBackend, TrainingParts, TrainJob
from fedsys.sim.backends.by_name import BACKENDS, make_backend
from fedsys.sim.backends.ray_cluster import RayBackend
from fedsys.sim.backends.sequential import SequentialBackend
from fedsys.sim.backends.vectorized import VectorizedBackend

__all__ = [
    "BACKENDS",
    "BackendSession",
    "RayBackend",
    "SequentialBackend",
    "TrainJob",
    "TrainingBackend",
    "TrainingParts",
    "VectorizedBackend",
    "make_backend",
]

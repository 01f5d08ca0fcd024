"""Backend names of ``sim.backend`` mapped to classes: the registry at the edge."""

from __future__ import annotations

from fedsys.core.threads import ThreadsSetting
from fedsys.sim.backends.base import TrainingBackend
from fedsys.sim.backends.ray_cluster import RayBackend
from fedsys.sim.backends.sequential import SequentialBackend
from fedsys.sim.backends.vectorized import VectorizedBackend

BACKENDS = ("sequential", "vectorized", "ray")


def make_backend(
    name: str,
    *,
    chunk_size: int = 256,
    ray_address: str | None = None,
    ray_workers: int | None = None,
    ray_worker_backend: str = "sequential",
    threads: ThreadsSetting = "auto",
) -> TrainingBackend:
    """The backend ``sim.backend`` names, with the settings it uses.

    ``threads`` (``sim.threads``) reaches the processes a backend starts (Ray actors);
    the simulator sets its own.

    Raises
    ------
    ValueError
        If ``name`` is not a known backend.
    """
    if name == "sequential":
        return SequentialBackend()
    if name == "vectorized":
        return VectorizedBackend(chunk_size=chunk_size)
    if name == "ray":
        if ray_worker_backend not in ("sequential", "vectorized"):
            raise ValueError(
                f"ray worker backend must be sequential or vectorized, got {ray_worker_backend!r}"
            )
        return RayBackend(
            address=ray_address,
            workers=ray_workers,
            worker_backend=ray_worker_backend,
            chunk_size=chunk_size,
            threads=threads,
        )
    raise ValueError(f"sim.backend must be one of {', '.join(BACKENDS)}, got {name!r}")

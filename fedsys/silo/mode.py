"""How the silo engine runs a job: binding and communication mode, failure policy.

Sol (NSDI 2020, https://www.usenix.org/conference/nsdi20/presentation/jin) binds tasks
early and decouples sending outputs from computing them; the baseline binds late and
couples them, as Spark does. Both are values of :class:`EngineMode`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FailurePolicy(StrEnum):
    """What a job does when a site is lost mid-job."""

    RERUN = "rerun"
    FAIL = "fail"


@dataclass(frozen=True)
class EngineMode:
    """How the engine binds tasks and sends outputs.

    Parameters
    ----------
    early_binding
        Sol: bind tasks ahead (pipelining) and push inputs; ``False``: late binding.
    decoupled_output
        Sol: outputs above the threshold go to communication workers while compute
        goes on; ``False``: the worker is held until its output is acknowledged.
    max_degree
        Cap on queued tasks per site beyond its workers (the pipelining degree).
    output_threshold_bytes
        Outputs above this size travel on their own stream (``PutOutput``).
    on_site_failure
        ``rerun`` the lost site's tasks on other eligible sites, or ``fail`` the job.
    reclaim
        Reclaim queued tasks from a site that falls behind (early binding only).
    """

    early_binding: bool = True
    decoupled_output: bool = True
    max_degree: int = 32
    output_threshold_bytes: int = 64 * 1024
    on_site_failure: FailurePolicy = FailurePolicy.RERUN
    reclaim: bool = True

    def __post_init__(self) -> None:
        if self.max_degree < 0:
            raise ValueError(f"max_degree must be >= 0, got {self.max_degree}")
        if self.output_threshold_bytes < 0:
            raise ValueError("output_threshold_bytes must be >= 0")
        object.__setattr__(self, "on_site_failure", FailurePolicy(self.on_site_failure))

    @classmethod
    def sol(cls, **overrides: object) -> EngineMode:
        """Early binding and decoupled communication."""
        return cls(**overrides)  # type: ignore[arg-type]

    @classmethod
    def baseline(cls, **overrides: object) -> EngineMode:
        """Late binding and coupled communication (Spark's way)."""
        settings: dict[str, object] = {"early_binding": False, "decoupled_output": False}
        settings.update(overrides)
        return cls(**settings)  # type: ignore[arg-type]


class JobFailedError(RuntimeError):
    """A job cannot finish (a lost site under ``fail``, or no site can run a task)."""

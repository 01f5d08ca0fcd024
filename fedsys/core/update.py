"""What a client sends back after local training, and what a selector learns from it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from fedsys.core.weights import ModelWeights

ClientId = int
"""Clients are numbered 0..N-1; runtimes map their own names (tokens, hosts) to these ids."""


@dataclass(frozen=True)
class LossStats:
    """Loss statistics over every sample a client trained on in one round.

    Oort's statistical utility is ``num_samples * sqrt(sum_sq_loss / samples_seen)``,
    so the sum of squared per-sample losses is kept over *all* samples, not the last batch.
    """

    mean_loss: float
    sum_sq_loss: float
    samples_seen: int

    @property
    def rms_loss(self) -> float:
        """Root mean square of the per-sample losses."""
        return math.sqrt(self.sum_sq_loss / self.samples_seen) if self.samples_seen else 0.0


@dataclass(frozen=True)
class ClientUpdate:
    """A client's contribution to one aggregation.

    Parameters
    ----------
    client_id
        Who trained.
    delta
        Trained weights minus the weights the client started from.
    num_samples
        Size of the client's local dataset (the FedAvg weight).
    duration_s
        Time the client took (virtual in simulation, measured in deployment).
    loss
        Loss statistics of the local training, or ``None`` when not reported.
    round_idx
        Round whose global weights the client started from (for staleness).
    upload_bytes
        Bytes the update occupies on the wire after any compression.
    """

    client_id: ClientId
    delta: ModelWeights
    num_samples: int
    duration_s: float = 0.0
    loss: LossStats | None = None
    round_idx: int = 0
    upload_bytes: int = 0


ReportOutcome = Literal["completed", "straggled", "dropped", "rejected"]
"""How a round ended for a picked client.

``completed``: its update arrived in time and was aggregated; ``straggled``: it
finished after the round closed (its work was discarded, its full duration is known);
``dropped``: it went offline before finishing (its speed and utility are unknown);
``rejected``: its update arrived but validation refused it.
"""

REPORT_OUTCOMES: tuple[ReportOutcome, ...] = ("completed", "straggled", "dropped", "rejected")


@dataclass(frozen=True)
class ClientReport:
    """What a selector learns about one client after a round it was picked for.

    Stragglers, dropouts and rejected clients report too (``completed=False``) so the
    system utility learns their speed even though their work was not used.

    Parameters
    ----------
    client_id, round_idx
        Who, and the round it was picked for.
    duration_s
        Download + compute + upload time (for a dropout: time until it went offline).
    num_samples
        Size of the client's local dataset.
    completed
        True exactly when ``outcome == "completed"``.
    loss
        Loss statistics of the local training, when the client trained and it counts.
    outcome
        How the round ended for the client (see :data:`ReportOutcome`); when omitted
        it is ``"completed"`` or, for an incomplete report, ``"straggled"`` (the
        meaning ``completed=False`` had before outcomes existed).
    samples_processed
        Samples the local training went through (local steps × batch, or epochs ×
        size); 0 when unknown. Oort's statistical utility needs it, not the data size.

    Raises
    ------
    ValueError
        If ``outcome`` is unknown or contradicts ``completed``.
    """

    client_id: ClientId
    round_idx: int
    duration_s: float
    num_samples: int
    completed: bool
    loss: LossStats | None = None
    outcome: ReportOutcome | None = None
    samples_processed: int = 0

    def __post_init__(self) -> None:
        if self.outcome is None:
            object.__setattr__(self, "outcome", "completed" if self.completed else "straggled")
        if self.outcome not in REPORT_OUTCOMES:
            raise ValueError(f"unknown report outcome {self.outcome!r}")
        if self.completed != (self.outcome == "completed"):
            raise ValueError(
                f"client {self.client_id}: completed={self.completed} contradicts "
                f"outcome {self.outcome!r}"
            )
        if self.samples_processed < 0:
            raise ValueError(f"samples_processed must be >= 0, got {self.samples_processed}")

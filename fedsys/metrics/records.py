"""Per-round records and the run result, with time-to-accuracy computed from them."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class RoundRecord:
    """What happened in one aggregation round.

    Times ending in ``_s`` are virtual seconds on the fleet's clock in a simulation
    (real seconds since the run's clock started in a deployment) except ``wall_s``,
    the host's time spent on the round.
    """

    round_idx: int
    start_s: float
    end_s: float
    wall_s: float
    selected: int
    participants: int
    dropouts: int = 0
    stragglers: int = 0
    rejected: int = 0
    bytes_down: int = 0
    bytes_up: int = 0
    train_loss: float | None = None
    accuracy: float | None = None
    test_loss: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        """Virtual duration of the round."""
        return self.end_s - self.start_s

    def to_json(self) -> dict[str, Any]:
        """A flat JSON-able dict (``extra`` merged in)."""
        row = asdict(self)
        extra = row.pop("extra")
        row["duration_s"] = self.duration_s
        row.update(extra)
        return row


RUN_STATUSES = ("completed", "interrupted", "failed")


@dataclass(frozen=True)
class RunResult:
    """All round records of a run plus its settings and how it ended.

    Parameters
    ----------
    records
        One record per aggregation, in order.
    config
        The settings the run was built from.
    status
        ``completed``, ``interrupted`` (stopped on request; resumable from its last
        checkpoint) or ``failed`` (an error ended it; ``reason`` says which).
    reason
        Why a run did not complete; ``None`` when it did.
    privacy
        What a DP strategy's epsilon assumes and covers (sampling, q, noise
        multiplier, rounds, epsilon); ``None`` without DP.
    """

    records: tuple[RoundRecord, ...]
    config: dict[str, Any] = field(default_factory=dict)
    status: str = "completed"
    reason: str | None = None
    privacy: dict[str, Any] | None = None

    def time_to_accuracy(self, target: float) -> float | None:
        """Virtual seconds until evaluated accuracy first reached ``target`` (None if never)."""
        for record in self.records:
            if record.accuracy is not None and record.accuracy >= target:
                return record.end_s
        return None

    def rounds_to_accuracy(self, target: float) -> int | None:
        """Rounds (1-based count) until accuracy first reached ``target``."""
        for record in self.records:
            if record.accuracy is not None and record.accuracy >= target:
                return record.round_idx + 1
        return None

    @property
    def final_accuracy(self) -> float | None:
        """Accuracy of the last evaluation."""
        evaluated = [r.accuracy for r in self.records if r.accuracy is not None]
        return evaluated[-1] if evaluated else None

    @property
    def best_accuracy(self) -> float | None:
        """Best evaluated accuracy."""
        evaluated = [r.accuracy for r in self.records if r.accuracy is not None]
        return max(evaluated) if evaluated else None

    def summary(
        self, target_accuracy: float | None = None, clock: Literal["virtual", "wall"] = "virtual"
    ) -> dict[str, Any]:
        """Headline numbers of the run, JSON-able.

        Parameters
        ----------
        target_accuracy
            The accuracy whose time and rounds to reach are reported.
        clock
            What the records' times are: ``virtual`` (a simulation: ``virtual_time_s``
            is the fleet's time, ``wall_time_s`` the host's time simulating rounds) or
            ``wall`` (a real run: ``training_time_s`` from the first round's start to
            the last round's end, in wall seconds).
        """
        tta = self.time_to_accuracy(target_accuracy) if target_accuracy else None
        return {
            "status": self.status,
            "reason": self.reason,
            "rounds": len(self.records),
            **(self._virtual_times() if clock == "virtual" else self._wall_times()),
            "final_accuracy": self.final_accuracy,
            "best_accuracy": self.best_accuracy,
            "target_accuracy": target_accuracy,
            "time_to_target_s": tta,
            "time_to_target_h": None if tta is None else tta / 3600.0,
            "rounds_to_target": self.rounds_to_accuracy(target_accuracy)
            if target_accuracy
            else None,
            "participants": sum(r.participants for r in self.records),
            "dropouts": sum(r.dropouts for r in self.records),
            "stragglers": sum(r.stragglers for r in self.records),
            "rejected": sum(r.rejected for r in self.records),
            "bytes_up": sum(r.bytes_up for r in self.records),
            "bytes_down": sum(r.bytes_down for r in self.records),
            "mean_round_s": _mean([r.duration_s for r in self.records]),
            **({"privacy": self.privacy} if self.privacy is not None else {}),
        }


    def _virtual_times(self) -> dict[str, float]:
        virtual_s = self.records[-1].end_s if self.records else 0.0
        return {
            "virtual_time_s": virtual_s,
            "virtual_time_h": virtual_s / 3600.0,
            "wall_time_s": sum(r.wall_s for r in self.records),
        }

    def _wall_times(self) -> dict[str, float]:
        if not self.records:
            return {"training_time_s": 0.0}
        return {"training_time_s": self.records[-1].end_s - self.records[0].start_s}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


_RECORD_FIELDS = {
    "round_idx",
    "start_s",
    "end_s",
    "wall_s",
    "selected",
    "participants",
    "dropouts",
    "stragglers",
    "rejected",
    "bytes_down",
    "bytes_up",
    "train_loss",
    "accuracy",
    "test_loss",
}


def record_from_json(row: dict[str, Any]) -> RoundRecord:
    """A round record back from its ``to_json`` form."""
    fields = {k: v for k, v in row.items() if k in _RECORD_FIELDS}
    extra = {k: v for k, v in row.items() if k not in _RECORD_FIELDS and k != "duration_s"}
    return RoundRecord(**fields, extra=extra)

"""The aggregator's durable state: one atomic file written after every round.

Holds the global weights, strategy and selector state, the next round index, the
run's elapsed seconds, the round records so far, and the config's training keys with
their hash. A server killed at any instant finds either the previous round's file or
this round's, never a torn one, and ``--resume`` refuses a file written under another
config, naming the keys that differ.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsys.config.diff import describe_changes
from fedsys.config.schema import RunConfig
from fedsys.core.weights import ModelWeights
from fedsys.metrics.run_folder import CHECKPOINT_FILE
from fedsys.parts.checkpoint import CheckpointError as StoredCheckpointError
from fedsys.parts.checkpoint import load_checkpoint, save_checkpoint

_VOLATILE_KEYS = ("deploy", "output_dir", "sim")
"""Config keys that may change across a restart (address, certificates, folder) or that a
deployment never reads (the simulator's training backend)."""


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or belongs to another config."""


def training_keys(config: RunConfig) -> dict[str, Any]:
    """The config's training-relevant keys as plain values (network settings excluded)."""
    return config.model_dump(mode="json", exclude=set(_VOLATILE_KEYS))


def config_hash(config: RunConfig) -> str:
    """SHA-256 of :func:`training_keys`."""
    data = training_keys(config)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ServerCheckpoint:
    """Everything a resumed server needs to continue as if it had never stopped."""

    config_sha256: str
    next_round: int
    elapsed_s: float
    weights: ModelWeights
    strategy_state: Any
    selector_state: Any
    records: tuple[dict[str, Any], ...]
    config: dict[str, Any] | None = None
    """:func:`training_keys` of the config written under (``None``: a checkpoint from
    before they were stored, which can only say *that* the config differs)."""

    def save(self, folder: Path) -> Path:
        """Write atomically to ``folder/checkpoint.pt`` (the simulator's pickle-free format)."""
        payload = {
            "format": 1,
            "config_sha256": self.config_sha256,
            "next_round": self.next_round,
            "elapsed_s": self.elapsed_s,
            "weights": self.weights,
            "strategy_state": self.strategy_state,
            "selector_state": self.selector_state,
            "records_json": json.dumps(list(self.records)),
            "config_json": json.dumps(self.config, sort_keys=True),
        }
        path = folder / CHECKPOINT_FILE
        save_checkpoint(path, payload)
        return path

    @classmethod
    def load(cls, folder: Path, config: RunConfig) -> ServerCheckpoint:
        """Read ``folder/checkpoint.pt`` and check it was written under ``config``.

        Raises
        ------
        CheckpointError
            If there is no checkpoint, it is unreadable, or its config hash differs.
        """
        path = folder / CHECKPOINT_FILE
        if not path.is_file():
            raise CheckpointError(f"no checkpoint to resume in {folder} ({CHECKPOINT_FILE})")
        try:
            payload = load_checkpoint(path)
            records = tuple(json.loads(payload["records_json"]))
            checkpoint = cls(
                config_sha256=payload["config_sha256"],
                next_round=int(payload["next_round"]),
                elapsed_s=float(payload["elapsed_s"]),
                weights=payload["weights"],
                strategy_state=payload["strategy_state"],
                selector_state=payload["selector_state"],
                records=records,
                config=json.loads(payload.get("config_json", "null")),
            )
        except (StoredCheckpointError, KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {path} is unreadable: {exc}") from None
        if checkpoint.config_sha256 != config_hash(config):
            raise CheckpointError(_mismatch(path, checkpoint.config, training_keys(config)))
        return checkpoint


def _mismatch(path: Path, stored: dict[str, Any] | None, current: dict[str, Any]) -> str:
    """One line: which keys differ from the checkpoint's config, and what to do."""
    remedy = (
        "resume with the config the run was started with (only the deploy section and "
        "output_dir may change), or start a new run in another --output-dir"
    )
    if not isinstance(stored, dict):
        return (
            f"checkpoint {path} was written under another config (it predates stored "
            f"configs, so the keys that differ cannot be named): {remedy}"
        )
    changes = describe_changes(stored, current) or "keys outside the stored config"
    return f"checkpoint {path} was written under another config ({changes}): {remedy}"

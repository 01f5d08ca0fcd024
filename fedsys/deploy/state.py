"""What a running aggregator holds: one object the gRPC handlers and the round loop share.

:class:`ServerState` is handed to the handlers (:class:`~fedsys.deploy.service.
AggregatorService`, :class:`~fedsys.deploy.secure_round.SecureService`) when they are
built; the round logic (:mod:`fedsys.deploy.rounds`) reads and advances it; the server
(:mod:`fedsys.deploy.server`) builds it, serves it and checkpoints it. Nothing here
waits, dials or writes files.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from fedsys.aggregation.base import Strategy
from fedsys.aggregation.compression import Compressor, NoCompression
from fedsys.aggregation.validation import UpdateValidator
from fedsys.config.deploy import DeployConfig
from fedsys.config.schema import RunConfig
from fedsys.core.training import TrainConfig
from fedsys.core.weights import ModelWeights
from fedsys.deploy.memory import FreeMemoryPacer, peak_rss_bytes
from fedsys.deploy.registry import ClientRegistry
from fedsys.metrics.records import RoundRecord
from fedsys.secure.plan import SecurePlan
from fedsys.selection.base import Selector
from fedsys.wire import auth
from fedsys.wire.chunks import sha256_hex
from fedsys.wire.protos import deploy_pb2
from fedsys.wire.tensors import weights_to_bytes

if TYPE_CHECKING:
    from fedsys.deploy.late import HeldUpdate
    from fedsys.deploy.round_state import LiveRound


class DeployError(RuntimeError):
    """The deployment cannot go on (too few clients, bad setup); the message says why."""


@dataclass(frozen=True)
class ModelBlob:
    """One model version as served: its bytes and their checksum, computed once.

    :meth:`of` serialises and hashes the whole model: call it in a worker thread.
    """

    version: int
    data: bytes
    sha256: str

    @classmethod
    def of(cls, weights: ModelWeights, version: int) -> ModelBlob:
        """Serialise and hash ``weights`` as model ``version`` (work that grows with the model)."""
        data = weights_to_bytes(weights)
        return cls(version=version, data=data, sha256=sha256_hex(data))

    @classmethod
    def none_yet(cls) -> ModelBlob:
        """The placeholder served before round 0's model is ready (version -1, no bytes)."""
        return cls(version=-1, data=b"", sha256="")


@dataclass(frozen=True)
class ServerParts:
    """Everything the aggregator runs with, built from a config or by hand."""

    config: RunConfig
    model: nn.Module
    test_features: torch.Tensor
    test_labels: torch.Tensor
    selector: Selector
    strategy: Strategy
    train: TrainConfig
    compressor: Compressor = field(default_factory=NoCompression)
    validator: UpdateValidator = field(default_factory=UpdateValidator)


@dataclass
class RunClock:
    """Seconds of the run so far, continuing across a resume (``offset_s``)."""

    offset_s: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def now_s(self) -> float:
        """Seconds since the run's clock read 0."""
        return self.offset_s + time.monotonic() - self.started

    def restart(self, offset_s: float | None = None) -> None:
        """Read ``offset_s`` (default: the current offset) now."""
        if offset_s is not None:
            self.offset_s = offset_s
        self.started = time.monotonic()

    def read_zero_at(self, unix_s: float) -> None:
        """Read 0 at wall time ``unix_s`` (the run's agreed start)."""
        self.started = time.monotonic() - (time.time() - unix_s)


@dataclass
class ServerState:
    """A running aggregator's state: settings, clients, model, round in flight, progress.

    Parameters
    ----------
    parts
        Model, test set, selector, strategy and settings.
    tokens
        Who may connect; client ids are the token file's order.
    weights
        The global model (replaced, never mutated, by each aggregation).
    model_blob
        The model version clients download: the current round's, ready before its
        tasks go out.
    """

    parts: ServerParts
    tokens: auth.TokenStore
    weights: ModelWeights
    registry: ClientRegistry
    upload_slots: asyncio.Semaphore
    download_slots: asyncio.Semaphore
    strategy_state: Any = None
    selector_state: Any = None
    update_bytes: int = 0
    model_blob: ModelBlob = field(default_factory=ModelBlob.none_yet)
    live_round: LiveRound | None = None
    records: list[RoundRecord] = field(default_factory=list)
    next_round: int = 0
    launches: int = 0
    """Tasks handed out so far (the simulator's launch serial, part of each task's seed)."""
    phase: str = "starting"
    port: int = 0
    baseline_rss_bytes: int = 0
    connected_rss_bytes: int = 0
    memory: FreeMemoryPacer = field(default_factory=FreeMemoryPacer)
    clock: RunClock = field(default_factory=RunClock)
    secure_plan: SecurePlan | None = None
    late_held: list[HeldUpdate] = field(default_factory=list)
    """Stragglers' updates waiting for the next round to close (``round.late_updates``)."""
    step_history: dict[int, float] = field(default_factory=dict)
    """Each client's last measured seconds per local step (``round.local_work``)."""

    @classmethod
    def of(cls, parts: ServerParts, tokens: auth.TokenStore) -> ServerState:
        """A fresh state: the model's initial weights, no client connected, no round run."""
        settings = parts.config.deploy
        return cls(
            parts=parts,
            tokens=tokens,
            weights=ModelWeights.from_module(parts.model),
            registry=ClientRegistry([]),
            upload_slots=asyncio.Semaphore(settings.upload_slots),
            download_slots=asyncio.Semaphore(settings.download_slots),
        )

    @property
    def config(self) -> RunConfig:
        """The run's config."""
        return self.parts.config

    @property
    def settings(self) -> DeployConfig:
        """The config's ``deploy`` section."""
        return self.parts.config.deploy

    @property
    def compressor(self) -> Compressor:
        """The update codec clients must use."""
        return self.parts.compressor

    @property
    def validator(self) -> UpdateValidator:
        """The rules every update passes before aggregation."""
        return self.parts.validator

    def now_s(self) -> float:
        """Seconds of the run so far (continues across a resume)."""
        return self.clock.now_s()

    def client_config_json(self) -> str:
        """The config sections a client builds its model and data shard from.

        With ``sim.threads``: the PyTorch threads a client trains with; with the
        ``deploy`` transfer deadlines: how long the client waits on a silent or slow
        model download before it gives up on the link.
        """
        sections = self.config.model_dump(
            mode="json",
            include={
                "seed": True,
                "dataset": True,
                "model": True,
                "sim": {"threads"},
                "deploy": {"transfer_idle_s", "transfer_min_bytes_per_s"},
            },
        )
        return json.dumps(sections, sort_keys=True)

    def status(self) -> deploy_pb2.StatusReply:
        """Connected clients and round progress, for ``fedsys status``."""
        live = self.live_round
        last = [r.accuracy for r in self.records if r.accuracy is not None]
        clients = [
            deploy_pb2.ClientStatus(
                client_id=s.client_id,
                name=s.name,
                state="training" if s.assignment else "idle",
                last_seen_s=time.monotonic() - s.last_seen,
            )
            for s in sorted(self.registry.sessions.values(), key=lambda s: s.client_id)
        ]
        return deploy_pb2.StatusReply(
            round_idx=self.next_round,
            rounds=self.config.rounds,
            phase=self.phase,
            assigned=len(live.assignments) if live else 0,
            received=len(live.arrivals) if live else 0,
            accuracy=last[-1] if last else float("nan"),
            clients=clients,
            peak_rss_bytes=peak_rss_bytes(),
            baseline_rss_bytes=self.baseline_rss_bytes,
        )


__all__ = ["DeployError", "ModelBlob", "RunClock", "ServerParts", "ServerState"]

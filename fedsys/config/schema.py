"""The run configuration: one pydantic model per component, nested in :class:`RunConfig`.

Every model forbids unknown keys, so a typo fails with an error naming the key
instead of being silently ignored. The sections live in ``workload`` (dataset, model,
training, devices) and ``rounds`` (round modes, evaluation, clock); this module
gathers them into :class:`RunConfig` and re-exports them.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from fedsys.aggregation.config import (
    CompressorConfig,
    FedAvgConfig,
    NoCompressionConfig,
    StrategyConfig,
    UpdateValidationConfig,
)
from fedsys.config.deploy import DeployConfig
from fedsys.config.rounds import (
    AsyncRounds,
    ClockConfig,
    DeadlineRounds,
    EvalConfig,
    ParticipationSetting,
    RoundConfig,
    SyncRounds,
)
from fedsys.config.settings import Settings
from fedsys.config.settings import refuse_unused as _refuse_unused
from fedsys.config.workload import (
    DATASET_KEYS,
    DatasetConfig,
    DevicesConfig,
    DirichletPartition,
    IidPartition,
    ModelConfig,
    PartitionConfig,
    QuantityPartition,
    TrainSettings,
)
from fedsys.core.threads import AUTO_MIN_PARAMETERS
from fedsys.secure.plan import refusal as secure_refusal
from fedsys.selection.config import RandomSelectorConfig, SelectorConfig

DATA_DEPENDENT_SELECTORS = frozenset({"oort", "power_of_choice", "availability"})
"""Selectors whose choice depends on client losses or data (not covered by DP accounting)."""


class MetricsConfig(Settings):
    """Extra round-record outputs besides ``rounds.jsonl`` and ``summary.json``."""

    csv: bool = Field(
        True, description="also write rounds.csv (one row per round, the record's fixed fields)"
    )
    tensorboard: bool = Field(
        False,
        description="also log every numeric value of each round to tensorboard/ (needs "
        "pip install 'fedsys[tensorboard]')",
    )


class SimConfig(Settings):
    """How the simulator trains a round's clients; never what the run computes.

    ``sequential``: one client after another (the reference); ``vectorized``: many
    clients in one batched ``torch.func`` computation, ``chunk_size`` at a time (equal
    to sequential within float32 rounding; models ``vmap`` cannot batch fall back to
    sequential); ``ray``: a pool of Ray actors (``pip install 'fedsys[ray]'``),
    bit-identical to sequential with ``ray_worker_backend: sequential``.
    """

    backend: Literal["sequential", "vectorized", "ray"] = Field(
        "sequential",
        description=(
            "sequential (one client after another, the reference), vectorized (batched "
            "PyTorch, equal within float32 rounding) or ray (Ray actors, needs the ray extra)"
        ),
    )
    chunk_size: int = Field(
        256, ge=1, description="vectorized: clients per batched computation (bounds memory)"
    )
    ray_address: str | None = Field(
        None, description="ray: an existing cluster's address; None starts a local one"
    )
    ray_workers: int | None = Field(
        None, ge=1, description="ray: actors, one CPU each; None: one per CPU"
    )
    ray_worker_backend: Literal["sequential", "vectorized"] = Field(
        "sequential",
        description=(
            "ray: how each actor trains its share, sequential (bit-identical) or vectorized"
        ),
    )
    threads: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description=(
            "PyTorch intra-op threads per training process (the simulator, each Ray "
            "actor, each deployed client or device host, each silo worker); 'auto': 1, "
            f"unless the model has {AUTO_MIN_PARAMETERS:,} parameters or more, then the "
            "process's share of the cores (small per-client steps gain nothing from more "
            "threads, and spinning threads slow a run beside any other busy process)"
        ),
    )

    @field_validator("threads", mode="before")
    @classmethod
    def _threads_count(cls, value: object) -> object:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool)
                               and value >= 1):
            return value
        raise ValueError(f"expected a positive number of threads or 'auto', got {value!r}")

    @model_validator(mode="after")
    def _keys_of_backend(self) -> SimConfig:
        used = {"backend", "threads"}
        if self.backend == "vectorized":
            used |= {"chunk_size"}
        if self.backend == "ray":
            used |= {"chunk_size", "ray_address", "ray_workers", "ray_worker_backend"}
        _refuse_unused(self, "sim", used, self.backend)
        return self


class RunConfig(Settings):
    """Everything that defines a run; a run is reproducible from this and its seed."""

    seed: int = Field(
        0, description="seeds data, model, fleet, selection and every client's mini-batch order"
    )
    rounds: int = Field(50, ge=1, description="aggregations to run")
    clients_per_round: int = Field(10, ge=1, description="K: updates a round aims to aggregate")
    target_accuracy: float | None = Field(
        0.85, gt=0, le=1, description="for time-to-accuracy in the summary (null: none)"
    )
    output_dir: str = Field("runs/quickstart", description="where results are written")
    checkpoint_every: int = Field(
        10,
        ge=0,
        description="rounds between checkpoints of a fedsys run (0: only at the end and on Ctrl-C)",
    )
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainSettings = Field(default_factory=TrainSettings)
    devices: DevicesConfig = Field(default_factory=DevicesConfig)
    clock: ClockConfig = Field(default_factory=ClockConfig)
    selector: SelectorConfig = Field(
        default_factory=RandomSelectorConfig,
        description="which clients train each round, chosen by name",
    )
    strategy: StrategyConfig = Field(
        default_factory=FedAvgConfig,
        description="how the server aggregates updates into the model, chosen by name",
    )
    compression: CompressorConfig = Field(
        default_factory=NoCompressionConfig,
        description="how clients encode their updates for the wire, chosen by name",
    )
    validation: UpdateValidationConfig = Field(default_factory=UpdateValidationConfig)
    round: RoundConfig = Field(
        default_factory=SyncRounds, description="when a round closes, chosen by mode"
    )
    eval: EvalConfig = Field(default_factory=EvalConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    sim: SimConfig = Field(default_factory=SimConfig)

    @property
    def participation(self) -> str:
        """How clients join a round: ``poisson``, ``selector`` or (async) ``concurrency``."""
        if isinstance(self.round, AsyncRounds):
            return "concurrency"
        if self.round.participation is not None:
            return self.round.participation
        private = self.strategy.name == "dp_fedavg" and self.selector.name == "random"
        return "poisson" if private else "selector"

    @model_validator(mode="after")
    def _selection_fits_privacy(self) -> RunConfig:
        if self.participation == "poisson" and self.selector.name != "random":
            raise ValueError(
                f"round.participation=poisson draws clients itself, so selector "
                f"{self.selector.name!r} would be ignored: use selector random or "
                "round.participation=selector"
            )
        if self.strategy.name != "dp_fedavg":
            return self
        if self.selector.name in DATA_DEPENDENT_SELECTORS and not getattr(
            self.strategy, "acknowledge_selection_not_private", False
        ):
            raise ValueError(
                f"selector {self.selector.name!r} chooses clients by their loss or data, "
                "which dp_fedavg's epsilon does not account for (the choice itself leaks "
                "information about client data): use selector random, or set "
                "strategy.acknowledge_selection_not_private=true to accept an epsilon "
                "that covers only the noisy aggregation"
            )
        sampling = getattr(self.strategy, "sampling", None)
        expected = "poisson" if self.participation == "poisson" else "fixed_size"
        if sampling is not None and sampling != expected:
            raise ValueError(
                f"strategy.sampling={sampling} contradicts how the run draws clients "
                f"(participation {self.participation}, accounted as {expected}): leave "
                "strategy.sampling unset"
            )
        return self

    @model_validator(mode="after")
    def _enough_selected(self) -> RunConfig:
        if isinstance(self.round, DeadlineRounds) and self.participation == "selector":
            selected = max(
                self.clients_per_round, math.ceil(self.round.overcommit * self.clients_per_round)
            )
            if self.round.min_participants > selected:
                raise ValueError(
                    f"round.min_participants ({self.round.min_participants}) exceeds the "
                    f"{selected} clients a round selects (clients_per_round x overcommit): "
                    "every round would be short"
                )
        return self

    @model_validator(mode="after")
    def _secure_aggregation_fits(self) -> RunConfig:
        if self.deploy.secure_aggregation == "none":
            return self
        mode = self.deploy.secure_aggregation
        problem = secure_refusal(self.strategy.name)
        if problem is not None:
            raise ValueError(f"deploy.secure_aggregation={mode}: {problem}")
        if self.compression.name != "none":
            raise ValueError(
                f"deploy.secure_aggregation={mode} quantizes updates itself: set "
                f"compression.name to none (got {self.compression.name!r})"
            )
        if isinstance(self.round, AsyncRounds):
            raise ValueError(
                f"deploy.secure_aggregation={mode} needs a round of clients to sum over: "
                "use round.mode sync or deadline"
            )
        return self

    @model_validator(mode="after")
    def _enough_clients(self) -> RunConfig:
        if self.clients_per_round > self.dataset.num_clients:
            raise ValueError(
                f"clients_per_round ({self.clients_per_round}) exceeds dataset.num_clients "
                f"({self.dataset.num_clients})"
            )
        return self


__all__ = [
    "DATASET_KEYS",
    "DATA_DEPENDENT_SELECTORS",
    "AsyncRounds",
    "ClockConfig",
    "DatasetConfig",
    "DeadlineRounds",
    "DevicesConfig",
    "DirichletPartition",
    "EvalConfig",
    "IidPartition",
    "MetricsConfig",
    "ModelConfig",
    "ParticipationSetting",
    "PartitionConfig",
    "QuantityPartition",
    "RoundConfig",
    "RunConfig",
    "Settings",
    "SimConfig",
    "SyncRounds",
    "TrainSettings",
]

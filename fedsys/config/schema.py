"""The run configuration: one pydantic model per component, nested in :class:`RunConfig`.

Every model forbids unknown keys, so a typo fails with an error naming the key
instead of being silently ignored.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fedsys.aggregation.config import (
    CompressorConfig,
    FedAvgConfig,
    NoCompressionConfig,
    StrategyConfig,
    UpdateValidationConfig,
)
from fedsys.config.deploy import DeployConfig
from fedsys.core.threads import AUTO_MIN_PARAMETERS
from fedsys.secure.plan import refusal as secure_refusal
from fedsys.selection.config import RandomSelectorConfig, SelectorConfig

DATA_DEPENDENT_SELECTORS = frozenset({"oort", "power_of_choice"})
"""Selectors whose choice depends on client losses or data (not covered by DP accounting)."""


class Settings(BaseModel):
    """Base of every config model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class IidPartition(Settings):
    """Shuffle samples uniformly across clients."""

    kind: Literal["iid"] = "iid"


class DirichletPartition(Settings):
    """Label skew: each class spread over clients by Dir(alpha); small alpha = very skewed."""

    kind: Literal["dirichlet"] = "dirichlet"
    alpha: float = Field(0.5, gt=0)


class QuantityPartition(Settings):
    """Quantity skew: lognormal client sizes with log-std sigma."""

    kind: Literal["quantity"] = "quantity"
    sigma: float = Field(1.0, gt=0)


PartitionConfig = Annotated[
    IidPartition | DirichletPartition | QuantityPartition, Field(discriminator="kind")
]


class DatasetConfig(Settings):
    """Which data, split how across how many clients.

    ``digits``, ``mnist1d`` and ``synthetic`` are generated offline; ``leaf`` and
    ``fedscale`` read a local ``path`` (their split is natural: one client per owner).
    """

    name: Literal["digits", "mnist1d", "synthetic", "leaf", "fedscale"] = "digits"
    num_clients: int = Field(100, ge=1, le=1_000_000)
    partition: PartitionConfig = Field(default_factory=DirichletPartition)
    min_samples: int = Field(1, ge=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    num_samples: int = Field(4000, ge=100, description="mnist1d: samples to generate")
    synthetic_alpha: float = Field(1.0, ge=0)
    synthetic_beta: float = Field(1.0, ge=0)
    path: str | None = None
    features_root: str | None = None
    factory: str | None = Field(
        None, description="'package.module:function' building your FederatedDataset"
    )

    @model_validator(mode="after")
    def _path_when_needed(self) -> DatasetConfig:
        if self.factory is not None:
            if self.name != "digits":  # the default, which a resolved config.yaml repeats
                raise ValueError("dataset.name does not apply with dataset.factory: remove it")
            _refuse_unused(self, "dataset", {"factory", "num_clients"}, "factory")
            return self
        if self.name in ("leaf", "fedscale") and not self.path:
            raise ValueError(f"dataset.path is required for dataset {self.name!r}")
        _refuse_unused(self, "dataset", DATASET_KEYS[self.name])
        return self


DATASET_KEYS = {
    "digits": {"num_clients", "partition", "min_samples", "test_fraction"},
    "mnist1d": {"num_clients", "partition", "min_samples", "test_fraction", "num_samples"},
    "synthetic": {"num_clients", "synthetic_alpha", "synthetic_beta"},
    "leaf": {"path"},
    "fedscale": {"path", "features_root"},
}
"""The keys each dataset uses besides ``name`` (the others are refused when set)."""


def _refuse_unused(
    section: BaseModel, prefix: str, used: set[str], variant: str | None = None
) -> None:
    """Refuse keys given a non-default value that the chosen variant ignores."""
    ignored = [
        name
        for name in sorted(section.model_fields_set - used - {"name", "source"})
        if getattr(section, name)
        != type(section).model_fields[name].get_default(call_default_factory=True)
    ]
    if ignored:
        keys = ", ".join(f"{prefix}.{name}" for name in ignored)
        variant = variant or getattr(section, "name", None) or getattr(section, "source", "")
        raise ValueError(f"{keys} does not apply to {prefix} {variant!r}: remove it")


class ModelConfig(Settings):
    """A built-in reference model, or your own by ``factory`` (see ``fedsys.parts.factories``)."""

    name: Literal["mlp", "logreg", "cnn1d"] = "mlp"
    hidden: tuple[int, ...] = (64,)
    factory: str | None = Field(
        None, description="'package.module:function(input_shape, num_classes) -> nn.Module'"
    )

    @model_validator(mode="after")
    def _hidden_sizes(self) -> ModelConfig:
        if any(size < 1 for size in self.hidden):
            raise ValueError(f"model.hidden entries must be at least 1, got {list(self.hidden)}")
        if self.factory is not None:
            if self.name != "mlp":  # the default, which a resolved config.yaml repeats
                raise ValueError("model.name does not apply with model.factory: remove it")
            _refuse_unused(self, "model", {"factory"}, "factory")
            return self
        _refuse_unused(self, "model", {"hidden"} if self.name == "mlp" else set())
        return self


class TrainSettings(Settings):
    """Client-side local training."""

    local_steps: int | None = Field(10, ge=1)
    local_epochs: int = Field(1, ge=1)
    batch_size: int = Field(20, ge=1)
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    proximal_mu: float = Field(0.0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = Field(
        "cpu", description="where local training runs; auto: cuda when torch sees a GPU"
    )


class DevicesConfig(Settings):
    """Where device profiles (speed, bandwidth, availability) come from.

    ``generated``: the seeded generator calibrated to published fleet statistics;
    ``file``: a fedsys CSV trace or a FedScale pickle pair at ``path``;
    ``uniform``: identical devices (useful to isolate algorithmic effects).
    """

    source: Literal["generated", "file", "uniform"] = "generated"
    path: str | None = None
    capacity_path: str | None = None
    always_available: bool = True
    model_cost_ratio: float | None = Field(
        None, gt=0, description="compute-time multiplier; None derives it from the model size"
    )
    transfer_cost_ratio: float | str = Field(
        1.0,
        description=(
            "transfer-time multiplier; 1.0 charges the model's real bytes, 'reference' "
            "charges every transfer as the traces' MobileNetV2 weights would take"
        ),
    )

    time_scale: float = Field(
        1.0,
        gt=0,
        description=(
            "multiplies every device time (compute, transfers, availability); 0.01 runs "
            "the fleet 100x faster than real devices (fedsys fidelity, emulated clients)"
        ),
    )

    @field_validator("transfer_cost_ratio")
    @classmethod
    def _positive_or_reference(cls, value: float | str) -> float | str:
        if value == "reference":
            return value
        try:
            ratio = float(value)
        except ValueError:
            ratio = math.nan
        if not ratio > 0 or not math.isfinite(ratio):
            raise ValueError("must be a positive number or 'reference'")
        return ratio

    @model_validator(mode="after")
    def _path_when_needed(self) -> DevicesConfig:
        if self.source == "file" and not self.path:
            raise ValueError("devices.path is required when devices.source is 'file'")
        trace_keys = {"path", "capacity_path"}
        used = set(type(self).model_fields) - ({"source"} if self.source == "file" else trace_keys)
        _refuse_unused(self, "devices", used)
        return self


Participation = Literal["selector", "poisson"]


class SyncRounds(Settings):
    """Select ceil(overcommit × K); the round closes when the K-th client arrives.

    ``participation: poisson`` skips the selector: each available client joins with
    probability K / N and the round waits for all of them (DP-FedAvg's default).
    """

    mode: Literal["sync"] = "sync"
    overcommit: float = Field(1.3, ge=1.0)
    participation: Participation | None = Field(
        None, description="selector or poisson; unset: poisson for dp_fedavg, else selector"
    )


class DeadlineRounds(Settings):
    """The round closes at a fixed virtual deadline; whoever arrived by then counts."""

    mode: Literal["deadline"] = "deadline"
    deadline_s: float = Field(gt=0)
    overcommit: float = Field(1.0, ge=1.0)
    min_participants: int = Field(1, ge=1)
    on_short_round: Literal["retry", "skip"] = "skip"
    max_retries: int = Field(3, ge=0)
    participation: Participation | None = Field(
        None, description="selector or poisson; unset: poisson for dp_fedavg, else selector"
    )


class AsyncRounds(Settings):
    """FedBuff: up to ``max_concurrency`` clients train at once; aggregate every B arrivals."""

    mode: Literal["async"] = "async"
    max_concurrency: int = Field(100, ge=1)
    buffer_size: int = Field(10, ge=1)
    max_staleness: int = Field(20, ge=0)
    staleness_exponent: float = Field(0.5, ge=0)


RoundConfig = Annotated[SyncRounds | DeadlineRounds | AsyncRounds, Field(discriminator="mode")]


class EvalConfig(Settings):
    """When and on whom the global model is evaluated.

    The central test set is always used; ``selection`` other than ``all`` also
    evaluates on test participants chosen by Oort's testing selector (``deviation``:
    a random sample sized by the deviation bound; ``category``: the fastest clients
    holding ``samples_per_category`` test samples of every class).
    """

    every: int = Field(5, ge=1)
    selection: Literal["all", "deviation", "category"] = "all"
    epsilon: float = Field(0.05, gt=0, lt=1, description="deviation: tolerated deviation")
    confidence: float = Field(0.95, gt=0, lt=1, description="deviation: confidence")
    samples_per_category: int = Field(20, ge=1, description="category: test samples per class")
    budget: int | None = Field(None, ge=1, description="category: most participants")
    method: Literal["fast", "milp"] = "fast"
    category_counts: Literal["truth", "reported"] = Field(
        "truth",
        description="category: per-class counts the selector plans with: the ground truth, "
        "or each device's reported label histogram (fedsys.data.device_stats)",
    )
    counts_epsilon: float | None = Field(
        None, gt=0, description="reported: local-DP epsilon of each device's histogram"
    )


class ClockConfig(Settings):
    """Server time the virtual clock charges besides the devices' own.

    A real aggregator spends time the device traces do not hold: dispatching tasks,
    receiving and aggregating each update, evaluating and checkpointing between
    rounds; and each task's messages (instruction, model request, upload grant,
    verdict) take a client time its profile does not hold. ``fedsys fidelity
    --calibrate`` measures the three terms on a real deployment.
    """

    server_round_s: float = Field(
        0.0, ge=0, description="seconds added to every round (dispatch, evaluation, checkpoint)"
    )
    server_update_s: float = Field(
        0.0, ge=0, description="seconds added per aggregated update (receive, decode, aggregate)"
    )
    client_task_s: float = Field(
        0.0,
        ge=0,
        description="seconds added to every client's task beyond its device profile (the "
        "protocol's messages: task, model request, upload grant, verdict)",
    )


class MetricsConfig(Settings):
    """Extra round-record outputs besides ``rounds.jsonl`` and ``summary.json``."""

    csv: bool = Field(True, description="also write rounds.csv")
    tensorboard: bool = Field(
        False, description="also log every round to tensorboard/ (needs the tensorboard extra)"
    )


class SimConfig(Settings):
    """How the simulator trains a round's clients; never what the run computes.

    ``sequential``: one client after another (the reference); ``vectorized``: many
    clients in one batched ``torch.func`` computation, ``chunk_size`` at a time (equal
    to sequential within float32 rounding; models ``vmap`` cannot batch fall back to
    sequential); ``ray``: a pool of Ray actors (``pip install 'fedsys[ray]'``),
    bit-identical to sequential with ``ray_worker_backend: sequential``.
    """

    backend: Literal["sequential", "vectorized", "ray"] = "sequential"
    chunk_size: int = Field(
        256, ge=1, description="vectorized: clients per batched computation (bounds memory)"
    )
    ray_address: str | None = Field(
        None, description="ray: an existing cluster's address; None starts a local one"
    )
    ray_workers: int | None = Field(
        None, ge=1, description="ray: actors, one CPU each; None: one per CPU"
    )
    ray_worker_backend: Literal["sequential", "vectorized"] = "sequential"
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

    seed: int = 0
    rounds: int = Field(50, ge=1)
    clients_per_round: int = Field(10, ge=1)
    target_accuracy: float | None = Field(0.85, gt=0, le=1)
    output_dir: str = "runs/quickstart"
    checkpoint_every: int = Field(
        10, ge=0, description="rounds between checkpoints of a CLI run (0: only at the end)"
    )
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainSettings = Field(default_factory=TrainSettings)
    devices: DevicesConfig = Field(default_factory=DevicesConfig)
    clock: ClockConfig = Field(default_factory=ClockConfig)
    selector: SelectorConfig = Field(default_factory=RandomSelectorConfig)
    strategy: StrategyConfig = Field(default_factory=FedAvgConfig)
    compression: CompressorConfig = Field(default_factory=NoCompressionConfig)
    validation: UpdateValidationConfig = Field(default_factory=UpdateValidationConfig)
    round: RoundConfig = Field(default_factory=SyncRounds)
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

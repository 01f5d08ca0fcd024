"""What a run trains on: the dataset and its split, the model, local training, devices."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from fedsys.config.settings import Settings, refuse_unused


class IidPartition(Settings):
    """Shuffle samples uniformly across clients."""

    kind: Literal["iid"] = "iid"


class DirichletPartition(Settings):
    """Label skew: each class spread over clients by Dir(alpha); small alpha = very skewed."""

    kind: Literal["dirichlet"] = "dirichlet"
    alpha: float = Field(
        0.5, gt=0, description="concentration of the label split; smaller: more skewed"
    )


class QuantityPartition(Settings):
    """Quantity skew: lognormal client sizes with log-std sigma."""

    kind: Literal["quantity"] = "quantity"
    sigma: float = Field(1.0, gt=0, description="log-std of the lognormal client sizes")


PartitionConfig = Annotated[
    IidPartition | DirichletPartition | QuantityPartition, Field(discriminator="kind")
]


class DatasetConfig(Settings):
    """Which data, split how across how many clients.

    ``digits``, ``mnist1d`` and ``synthetic`` are generated offline; ``leaf`` and
    ``fedscale`` read a local ``path`` (their split is natural: one client per owner).
    """

    name: Literal["digits", "mnist1d", "synthetic", "leaf", "fedscale"] = Field(
        "digits",
        description="digits (scikit-learn), mnist1d (generated offline), synthetic "
        "(LEAF Synthetic(alpha, beta)), leaf (LEAF JSON folder at path), fedscale "
        "(FedScale client_data_mapping CSV at path)",
    )
    num_clients: int = Field(
        100, ge=1, le=1_000_000, description="clients to split a central dataset over"
    )
    partition: PartitionConfig = Field(
        default_factory=DirichletPartition,
        description="how a central dataset is split over the clients, chosen by kind: "
        "iid, dirichlet (label skew) or quantity (lognormal sizes)",
    )
    min_samples: int = Field(1, ge=1, description="fewest samples a client holds")
    test_fraction: float = Field(
        0.2, gt=0, lt=1, description="held-out share of a central dataset (the test set)"
    )
    num_samples: int = Field(4000, ge=100, description="mnist1d: samples to generate")
    synthetic_alpha: float = Field(
        1.0, ge=0, description="synthetic: alpha of Synthetic(alpha, beta), model heterogeneity"
    )
    synthetic_beta: float = Field(
        1.0, ge=0, description="synthetic: beta of Synthetic(alpha, beta), data heterogeneity"
    )
    path: str | None = Field(
        None,
        description="leaf: the LEAF JSON folder; fedscale: the client_data_mapping CSV "
        "(local files, never downloaded)",
    )
    features_root: str | None = Field(
        None, description="fedscale: folder every sample_path of the mapping is relative to"
    )
    factory: str | None = Field(
        None,
        description="your own data: 'package.module:function', called as "
        "function(num_clients, seed) -> FederatedDataset (replaces name; the working "
        "folder is importable)",
    )

    @model_validator(mode="after")
    def _path_when_needed(self) -> DatasetConfig:
        if self.factory is not None:
            if self.name != "digits":  # the default, which a resolved config.yaml repeats
                raise ValueError("dataset.name does not apply with dataset.factory: remove it")
            refuse_unused(self, "dataset", {"factory", "num_clients"}, "factory")
            return self
        if self.name in ("leaf", "fedscale") and not self.path:
            raise ValueError(f"dataset.path is required for dataset {self.name!r}")
        refuse_unused(self, "dataset", DATASET_KEYS[self.name])
        return self


DATASET_KEYS = {
    "digits": {"num_clients", "partition", "min_samples", "test_fraction"},
    "mnist1d": {"num_clients", "partition", "min_samples", "test_fraction", "num_samples"},
    "synthetic": {"num_clients", "synthetic_alpha", "synthetic_beta"},
    "leaf": {"path"},
    "fedscale": {"path", "features_root"},
}
"""The keys each dataset uses besides ``name`` (the others are refused when set)."""


class ModelConfig(Settings):
    """A built-in reference model, or your own by ``factory`` (see ``fedsys.parts.factories``)."""

    name: Literal["mlp", "logreg", "cnn1d"] = Field(
        "mlp",
        description="a built-in model: mlp (multi-layer perceptron), logreg (logistic "
        "regression) or cnn1d (1-D convolutional net)",
    )
    hidden: tuple[int, ...] = Field((64,), description="mlp: hidden layer widths")
    factory: str | None = Field(
        None,
        description="your own model: 'package.module:function', called as "
        "function(input_shape, num_classes) -> nn.Module with torch seeded from seed "
        "(replaces name; see examples/custom_model.py)",
    )

    @model_validator(mode="after")
    def _hidden_sizes(self) -> ModelConfig:
        if any(size < 1 for size in self.hidden):
            raise ValueError(f"model.hidden entries must be at least 1, got {list(self.hidden)}")
        if self.factory is not None:
            if self.name != "mlp":  # the default, which a resolved config.yaml repeats
                raise ValueError("model.name does not apply with model.factory: remove it")
            refuse_unused(self, "model", {"factory"}, "factory")
            return self
        refuse_unused(self, "model", {"hidden"} if self.name == "mlp" else set())
        return self


class TrainSettings(Settings):
    """Client-side local training."""

    local_steps: int | None = Field(
        10, ge=1, description="SGD steps per round (null: train local_epochs epochs)"
    )
    local_epochs: int = Field(1, ge=1, description="epochs per round when local_steps is null")
    batch_size: int = Field(20, ge=1, description="mini-batch size")
    lr: float = Field(0.05, gt=0, description="client SGD learning rate")
    momentum: float = Field(0.0, ge=0, lt=1, description="client SGD momentum")
    weight_decay: float = Field(0.0, ge=0, description="client SGD weight decay")
    proximal_mu: float = Field(
        0.0, ge=0, description="FedProx proximal term (the fedprox strategy sets it too)"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "cpu",
        description="where local training and central evaluation run; auto: cuda when torch "
        "sees a GPU. The model and data move there once; server-side weights and "
        "checkpoints stay on the CPU",
    )


class DevicesConfig(Settings):
    """Where device profiles (speed, bandwidth, availability) come from.

    ``generated``: the seeded generator calibrated to published fleet statistics;
    ``file``: a fedsys CSV trace or a FedScale pickle pair at ``path``;
    ``uniform``: identical devices (useful to isolate algorithmic effects).
    """

    source: Literal["generated", "file", "uniform"] = Field(
        "generated",
        description="generated (the calibrated generator, fedsys/traces/FORMAT.md), file "
        "(a fedsys CSV or FedScale pickle folder at path) or uniform (identical devices)",
    )
    path: str | None = Field(
        None,
        description="file: a fedsys CSV, a folder holding FedScale's client_device_capacity "
        "(and optionally client_behave_trace), or one FedScale pickle",
    )
    capacity_path: str | None = Field(
        None, description="file: a second FedScale pickle, when path names only one"
    )
    always_available: bool = Field(
        True, description="ignore the availability sessions: every device is always online"
    )
    model_cost_ratio: float | None = Field(
        None,
        gt=0,
        description="compute-time multiplier against the traces' MobileNetV2 (1.0: time as "
        "MobileNetV2); null derives it from the model size",
    )
    transfer_cost_ratio: float | str = Field(
        1.0,
        description=(
            "transfer-time multiplier; 1.0 charges the model's real bytes, 'reference' "
            "charges every download and upload as the traces' MobileNetV2 weights (14 MB) "
            "would take, so a small proxy model keeps a realistic wire"
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
        refuse_unused(self, "devices", used)
        return self

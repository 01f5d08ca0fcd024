"""Typed configuration of strategies, compressors and update validation.

The name → class registry of this family lives here: each config model names its
fields, checks their bounds once, and builds the object with ``build()``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fedsys.aggregation.base import Strategy
from fedsys.aggregation.compression import (
    Compressor,
    Int8Quantizer,
    NoCompression,
    TopK,
    TopKInt8,
)
from fedsys.aggregation.dp import DPFedAvg
from fedsys.aggregation.fedavg import FedAvg
from fedsys.aggregation.fedavgm import FedAvgM
from fedsys.aggregation.fedopt import FedAdagrad, FedAdam, FedOptSettings, FedYogi
from fedsys.aggregation.fedprox import FedProx
from fedsys.aggregation.krum import Krum, MultiKrum
from fedsys.aggregation.median import DEFAULT_MAX_UPDATES, CoordinateMedian
from fedsys.aggregation.privacy import PrivacyAccountant
from fedsys.aggregation.qfedavg import QFedAvg
from fedsys.aggregation.trimmed_mean import TrimmedMean
from fedsys.aggregation.validation import UpdateValidator


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Settings several rules share, described once.
Weighted = Annotated[
    bool, Field(description="weigh each update by its samples (false: a plain mean)")
]
ServerLr = Annotated[
    float, Field(gt=0, description="server learning rate: the step taken along the aggregate")
]
MaxUpdates = Annotated[
    int,
    Field(ge=1, description="most updates held at once to aggregate a round (bounds memory)"),
]
NumByzantine = Annotated[
    int, Field(ge=0, description="f: faulty or malicious clients assumed per round")
]


# ---------------------------------------------------------------------- FedAvg family
class FedAvgConfig(_Settings):
    """Federated averaging (McMahan et al., 2017)."""

    name: Literal["fedavg"] = "fedavg"
    weighted: Weighted = True
    server_lr: ServerLr = 1.0

    def build(self, seed: int = 0) -> Strategy:
        """Construct the strategy (``seed`` is unused)."""
        return FedAvg(weighted=self.weighted, server_lr=self.server_lr)


class FedAvgMConfig(_Settings):
    """FedAvg with server momentum (Hsu et al., 2019)."""

    name: Literal["fedavgm"] = "fedavgm"
    server_lr: ServerLr = 1.0
    momentum: float = Field(0.9, ge=0, lt=1, description="server momentum")
    weighted: Weighted = True

    def build(self, seed: int = 0) -> Strategy:
        """Construct the strategy (``seed`` is unused)."""
        return FedAvgM(server_lr=self.server_lr, momentum=self.momentum, weighted=self.weighted)


class FedProxConfig(_Settings):
    """FedProx (Li et al., 2020): FedAvg aggregation, clients train with proximal ``mu``."""

    name: Literal["fedprox"] = "fedprox"
    mu: float = Field(
        0.01, ge=0, description="proximal term the clients train with (sets train.proximal_mu)"
    )
    weighted: Weighted = True
    server_lr: ServerLr = 1.0

    def build(self, seed: int = 0) -> Strategy:
        """Construct the strategy (``seed`` is unused)."""
        return FedProx(mu=self.mu, weighted=self.weighted, server_lr=self.server_lr)


class _FedOptFields(_Settings):
    """Settings of the adaptive server optimizers (Reddi et al., 2021 defaults)."""

    server_lr: ServerLr = 1e-2
    beta1: float = Field(0.9, ge=0, lt=1, description="decay of the first moment (momentum)")
    beta2: float = Field(0.99, ge=0, lt=1, description="decay of the second moment")
    tau: float = Field(1e-3, gt=0, description="adaptivity: added to the second moment's root")
    weighted: Weighted = True

    def settings(self) -> FedOptSettings:
        """The shared settings object."""
        return FedOptSettings(
            server_lr=self.server_lr,
            beta1=self.beta1,
            beta2=self.beta2,
            tau=self.tau,
            weighted=self.weighted,
        )


class FedAdagradConfig(_FedOptFields):
    """FedAdagrad (Reddi et al., 2021)."""

    name: Literal["fedadagrad"] = "fedadagrad"

    def build(self, seed: int = 0) -> Strategy:
        """Construct the strategy (``seed`` is unused)."""
        return FedAdagrad(self.settings())


class FedAdamConfig(_FedOptFields):
    """FedAdam (Reddi et al., 2021)."""

    name: Literal["fedadam"] = "fedadam"

    def build(self, seed: int = 0) -> Strategy:
        """Construct the strategy (``seed`` is unused)."""
        return FedAdam(self.settings())


class FedYogiConfig(_FedOptFields):
    """FedYogi (Reddi et al., 2021)."""

    name: Literal["fedyogi"] = "fedyogi"

    def build(self, seed: int = 0) -> Strategy:
        """Construct the strategy (``seed`` is unused)."""
        return FedYogi(self.settings())


class QFedAvgConfig(_Settings):
    """q-FedAvg (Li et al., 2020); ``client_lr`` must equal the clients' SGD learning rate."""

    name: Literal["qfedavg"] = "qfedavg"
    q: float = Field(
        1.0, ge=0, description="fairness: larger q weighs clients with a higher loss more"
    )
    client_lr: float | None = Field(
        None, gt=0, description="the clients' SGD learning rate; unset: train.lr"
    )

    def build(self, seed: int = 0) -> Strategy:
        """Construct the strategy (``seed`` is unused)."""
        if self.client_lr is None:
            raise ValueError("strategy.client_lr is required for qfedavg (the clients' SGD lr)")
        return QFedAvg(client_lr=self.client_lr, q=self.q)


# ---------------------------------------------------------------------- robust rules
class MedianConfig(_Settings):
    """Coordinate-wise median (Yin et al., 2018); holds up to ``max_updates`` updates."""

    name: Literal["median"] = "median"
    max_updates: MaxUpdates = DEFAULT_MAX_UPDATES

    def build(self, seed: int = 0) -> Strategy:
        """Construct the strategy (``seed`` is unused)."""
        return CoordinateMedian(max_updates=self.max_updates)


class TrimmedMeanConfig(_Settings):
    """Coordinate-wise trimmed mean (Yin et al., 2018); ``trim_fraction`` at each end."""

    name: Literal["trimmed_mean"] = "trimmed_mean"
    trim_fraction: float = Field(
        0.1, ge=0, lt=0.5, description="share of the values cut at each end of a coordinate"
    )
    max_updates: MaxUpdates = DEFAULT_MAX_UPDATES

    def build(self, seed: int = 0) -> Strategy:
        """Construct the strategy (``seed`` is unused)."""
        return TrimmedMean(trim_fraction=self.trim_fraction, max_updates=self.max_updates)


class KrumConfig(_Settings):
    """Krum (Blanchard et al., 2017) assuming ``num_byzantine`` bad clients per round."""

    name: Literal["krum"] = "krum"
    num_byzantine: NumByzantine = 1
    max_updates: MaxUpdates = DEFAULT_MAX_UPDATES

    def build(self, seed: int = 0) -> Strategy:
        """Construct the strategy (``seed`` is unused)."""
        return Krum(num_byzantine=self.num_byzantine, max_updates=self.max_updates)


class MultiKrumConfig(_Settings):
    """Multi-Krum: mean of the ``num_selected`` best-scored updates (``None``: K - f)."""

    name: Literal["multikrum"] = "multikrum"
    num_byzantine: NumByzantine = 1
    num_selected: int | None = Field(
        None, ge=1, description="updates averaged (null: K - f)"
    )
    max_updates: MaxUpdates = DEFAULT_MAX_UPDATES

    def build(self, seed: int = 0) -> Strategy:
        """Construct the strategy (``seed`` is unused)."""
        return MultiKrum(
            num_byzantine=self.num_byzantine,
            num_selected=self.num_selected,
            max_updates=self.max_updates,
        )


# ---------------------------------------------------------------------- privacy
class DPFedAvgConfig(_Settings):
    """DP-FedAvg (McMahan et al., 2018): clip to ``clip_norm``, noise ``z × clip_norm``.

    ``clients_per_round`` and ``population_size`` must describe how the runtime
    samples clients: they set both the divisor of the noisy sum and the accounting.
    """

    name: Literal["dp_fedavg"] = "dp_fedavg"
    clip_norm: float = Field(1.0, gt=0, description="each update is clipped to this L2 norm")
    noise_multiplier: float = Field(
        1.0, ge=0, description="z: Gaussian noise of standard deviation z x clip_norm on the sum"
    )
    clients_per_round: int | None = Field(
        None,
        ge=1,
        description="clients summed per round; unset: the run's clients_per_round (the "
        "buffer size in async rounds)",
    )
    population_size: int | None = Field(
        None, ge=1, description="unset: the clients holding data in the loaded dataset"
    )
    sampling: Literal["poisson", "fixed_size"] | None = Field(
        None, description="how the accountant takes clients to be drawn; unset: how the run draws"
    )
    acknowledge_selection_not_private: bool = Field(
        False,
        description="accept a data-dependent selector (oort, power_of_choice), whose choice "
        "leaks what epsilon does not cover",
    )
    target_delta: float = Field(1e-5, gt=0, lt=1, description="delta the epsilon is given for")
    epsilon_budget: float | None = Field(
        None, gt=0, description="largest epsilon the run may spend (null: no limit)"
    )
    on_budget_exceeded: Literal["stop", "warn"] = Field(
        "stop", description="what happens once epsilon_budget is spent"
    )
    server_lr: ServerLr = 1.0

    @model_validator(mode="after")
    def _sample_fits_population(self) -> DPFedAvgConfig:
        if self.clients_per_round is None or self.population_size is None:
            return self
        if self.clients_per_round > self.population_size:
            raise ValueError(
                f"clients_per_round={self.clients_per_round} exceeds "
                f"population_size={self.population_size}"
            )
        return self

    def build(self, seed: int = 0) -> Strategy:
        """Construct the strategy; the noise is drawn from ``seed``."""
        if self.clients_per_round is None or self.population_size is None:
            raise ValueError(
                "strategy.clients_per_round and strategy.population_size are required "
                "for dp_fedavg: they set the noise divisor and the privacy accounting"
            )
        accountant = PrivacyAccountant(
            noise_multiplier=self.noise_multiplier,
            clients_per_round=self.clients_per_round,
            population_size=self.population_size,
            sampling=self.sampling or "poisson",
        )
        return DPFedAvg(
            clip_norm=self.clip_norm,
            accountant=accountant,
            target_delta=self.target_delta,
            epsilon_budget=self.epsilon_budget,
            on_budget_exceeded=self.on_budget_exceeded,
            server_lr=self.server_lr,
            seed=seed,
        )


StrategyConfig = Annotated[
    FedAvgConfig
    | FedAvgMConfig
    | FedProxConfig
    | FedAdagradConfig
    | FedAdamConfig
    | FedYogiConfig
    | QFedAvgConfig
    | MedianConfig
    | TrimmedMeanConfig
    | KrumConfig
    | MultiKrumConfig
    | DPFedAvgConfig,
    Field(discriminator="name"),
]
"""Union of every strategy config, discriminated by ``name``."""


# ---------------------------------------------------------------------- compression
class NoCompressionConfig(_Settings):
    """Send raw float32 deltas."""

    name: Literal["none"] = "none"

    def build(self) -> Compressor:
        """Construct the compressor."""
        return NoCompression()


class Int8CompressionConfig(_Settings):
    """8-bit stochastic quantization, one scale per ``chunk_size`` values."""

    name: Literal["int8"] = "int8"
    chunk_size: int = Field(256, ge=1, description="values sharing one scale")

    def build(self) -> Compressor:
        """Construct the compressor."""
        return Int8Quantizer(chunk_size=self.chunk_size)


class TopKCompressionConfig(_Settings):
    """Top-k sparsification of a ``fraction`` of the entries, with error feedback."""

    name: Literal["topk"] = "topk"
    fraction: float = Field(0.01, gt=0, le=1, description="share of the largest entries kept")

    def build(self) -> Compressor:
        """Construct the compressor."""
        return TopK(fraction=self.fraction)


class TopKInt8CompressionConfig(_Settings):
    """Top-k with error feedback, kept values 8-bit quantized."""

    name: Literal["topk_int8"] = "topk_int8"
    fraction: float = Field(0.01, gt=0, le=1, description="share of the largest entries kept")
    chunk_size: int = Field(256, ge=1, description="kept values sharing one scale")

    def build(self) -> Compressor:
        """Construct the compressor."""
        return TopKInt8(fraction=self.fraction, chunk_size=self.chunk_size)


CompressorConfig = Annotated[
    NoCompressionConfig | Int8CompressionConfig | TopKCompressionConfig | TopKInt8CompressionConfig,
    Field(discriminator="name"),
]
"""Union of every compressor config, discriminated by ``name``."""


# ---------------------------------------------------------------------- validation
class UpdateValidationConfig(_Settings):
    """Checks on every incoming update: its shape, dtype and finiteness always, its norm
    when ``max_norm`` is set."""

    max_norm: float | None = Field(
        None, gt=0, description="also reject updates with a larger L2 norm (null: no bound)"
    )

    def build(self) -> UpdateValidator:
        """Construct the validator."""
        return UpdateValidator(max_norm=self.max_norm)


__all__ = [
    "CompressorConfig",
    "DPFedAvgConfig",
    "FedAdagradConfig",
    "FedAdamConfig",
    "FedAvgConfig",
    "FedAvgMConfig",
    "FedProxConfig",
    "FedYogiConfig",
    "Int8CompressionConfig",
    "KrumConfig",
    "MedianConfig",
    "MultiKrumConfig",
    "NoCompressionConfig",
    "QFedAvgConfig",
    "StrategyConfig",
    "TopKCompressionConfig",
    "TopKInt8CompressionConfig",
    "TrimmedMeanConfig",
    "UpdateValidationConfig",
]

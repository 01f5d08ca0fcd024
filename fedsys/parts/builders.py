"""Turn a :class:`RunConfig` into the objects every runtime trains with.

Dataset, model, fleet, trainer and strategy are built here, once, below the simulator,
the deployment and fidelity: each runtime calls these, so a config means the same
objects wherever it runs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fedsys.aggregation.base import Strategy
from fedsys.aggregation.config import DPFedAvgConfig, QFedAvgConfig, StrategyConfig
from fedsys.config.loader import ConfigError
from fedsys.config.schema import (
    AsyncRounds,
    DatasetConfig,
    DevicesConfig,
    ModelConfig,
    RunConfig,
    TrainSettings,
)
from fedsys.core.training import LocalTrainer, TrainConfig
from fedsys.core.weights import ModelWeights
from fedsys.data import builtin, fedscale, leaf
from fedsys.data.federated import FederatedDataset
from fedsys.models import cnn1d, logistic_regression, mlp
from fedsys.parts.factories import call_factory
from fedsys.secure.cost import SecureCostModel
from fedsys.traces import (
    DeviceFleet,
    generate_fleet,
    load_fleet_file,
    model_cost_ratio,
    transfer_cost_ratio,
)


def build_dataset(config: DatasetConfig, seed: int) -> FederatedDataset:
    """Generate or load the federated dataset the config names (or its factory builds)."""
    if config.factory is not None:
        made: FederatedDataset = call_factory(
            config.factory, "dataset.factory", FederatedDataset, config.num_clients, seed
        )
        return made
    if config.name == "synthetic":
        return builtin.make_synthetic(
            config.synthetic_alpha, config.synthetic_beta, config.num_clients, seed
        )
    if config.name == "leaf":
        return leaf.load_leaf(Path(str(config.path)))
    if config.name == "fedscale":
        root = Path(config.features_root) if config.features_root else Path(str(config.path)).parent
        return fedscale.load_fedscale_mapping(Path(str(config.path)), root)
    if config.name == "digits":
        central = builtin.load_digits(seed, config.test_fraction)
    else:
        central = builtin.load_mnist1d(seed, config.num_samples, config.test_fraction)
    partition = config.partition
    return builtin.partition_central(
        central,
        kind=partition.kind,
        num_clients=config.num_clients,
        seed=seed,
        alpha=getattr(partition, "alpha", None),
        sigma=getattr(partition, "sigma", None),
        min_samples=config.min_samples,
    )


def build_model(config: ModelConfig, dataset: FederatedDataset, seed: int) -> nn.Module:
    """Instantiate a reference model sized for ``dataset``, initialised from ``seed``.

    The global torch RNG is forked, so building a model leaves it untouched.
    """
    shape, classes = dataset.input_shape, dataset.num_classes
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if config.factory is not None:
            made: nn.Module = call_factory(
                config.factory, "model.factory", nn.Module, tuple(shape), classes
            )
            return made
        if config.name == "logreg":
            return logistic_regression(shape, classes)
        if config.name == "cnn1d":
            return cnn1d(shape, classes)
        return mlp(shape, classes, config.hidden)


def build_fleet(config: DevicesConfig, num_clients: int, seed: int) -> DeviceFleet:
    """Device profiles for ``num_clients`` clients."""
    if config.source == "file":
        fleet = load_fleet_file(Path(str(config.path)), config.capacity_path)
        if fleet.num_clients < num_clients:
            raise ValueError(
                f"trace {config.path} has {fleet.num_clients} devices, fewer than the "
                f"{num_clients} clients: use fewer clients or a larger trace"
            )
        fleet = fleet.take(range(num_clients))
    elif config.source == "uniform":
        fleet = DeviceFleet.always_available(num_clients)
    else:
        fleet = generate_fleet(num_clients, seed)
    return shape_fleet(fleet, config)


def shape_fleet(fleet: DeviceFleet, config: DevicesConfig) -> DeviceFleet:
    """``fleet`` as the run sees it: availability per ``always_available``, times scaled.

    Real emulated clients (``fedsys client --profile``) shape their trace with this
    same function, so they follow exactly the profiles the simulator uses.
    """
    fleet = fleet.without_availability() if config.always_available else fleet
    return fleet.scaled_time(config.time_scale)


def charge_transfers(fleet: DeviceFleet, config: DevicesConfig, model: nn.Module) -> DeviceFleet:
    """``fleet`` with transfers charged at ``devices.transfer_cost_ratio``.

    ``reference`` charges each of the model's transfers as the traces' reference
    model (MobileNetV2's weights) would take, the wire's twin of ``model_cost_ratio 1``.
    """
    if config.transfer_cost_ratio == "reference":
        ratio = transfer_cost_ratio(ModelWeights.from_module(model).num_bytes)
    else:
        ratio = float(config.transfer_cost_ratio)
    return fleet if ratio == 1.0 else fleet.scaled_transfers(ratio)


def cost_ratio_of(config: DevicesConfig, model: nn.Module) -> float:
    """Compute-time multiplier of ``model``: ``devices.model_cost_ratio`` or derived."""
    return config.model_cost_ratio or model_cost_ratio(model)


def build_trainer(config: TrainSettings, strategy: Strategy | None = None) -> LocalTrainer:
    """Local trainer with the configured SGD settings.

    A strategy that prescribes a client-side proximal term (FedProx) sets ``mu``
    unless ``train.proximal_mu`` asks for a larger one.
    """
    settings = config.model_dump(exclude={"device"})
    if strategy is not None:
        settings["proximal_mu"] = max(settings["proximal_mu"], strategy.client_proximal_mu)
    return LocalTrainer(TrainConfig(**settings))


def complete_strategy(config: RunConfig, population: int | None = None) -> StrategyConfig:
    """Fill the strategy settings a run already knows (DP sampling, q-FedAvg's lr).

    DP-FedAvg's population is the clients holding data in the loaded dataset
    (``population``; ``dataset.num_clients`` when not given), its count per round is
    K (the buffer size B in async rounds, which aggregate B updates), and its
    sampling is how the run draws clients: ``poisson`` or ``fixed_size``.

    Raises
    ------
    ValueError
        If ``strategy.population_size`` exceeds the clients the data really has.
    """
    strategy = config.strategy
    if isinstance(strategy, DPFedAvgConfig):
        real = population if population is not None else config.dataset.num_clients
        if strategy.population_size is not None and strategy.population_size > real:
            raise ValueError(
                f"strategy.population_size={strategy.population_size} exceeds the "
                f"{real} clients holding data: epsilon would be understated"
            )
        per_round = (
            config.round.buffer_size
            if isinstance(config.round, AsyncRounds)
            else config.clients_per_round
        )
        filled = {
            "clients_per_round": strategy.clients_per_round or min(per_round, real),
            "population_size": strategy.population_size or real,
            "sampling": "poisson" if config.participation == "poisson" else "fixed_size",
        }
        return DPFedAvgConfig.model_validate({**strategy.model_dump(), **filled})
    if isinstance(strategy, QFedAvgConfig) and strategy.client_lr is None:
        return strategy.model_copy(update={"client_lr": config.train.lr})
    return strategy




def check_against_data(config: RunConfig, dataset: FederatedDataset) -> int:
    """Cross-check the config against the data really loaded; return the population.

    Raises
    ------
    ConfigError
        If a round asks for more clients than hold data.
    """
    population = int((dataset.client_sizes > 0).sum())
    if population == 0:
        raise ConfigError(f"dataset {dataset.name!r} has no client holding training data")
    if config.clients_per_round > population:
        raise ConfigError(
            f"clients_per_round ({config.clients_per_round}) exceeds the {population} clients "
            f"holding data in dataset {dataset.name!r}"
        )
    return population



def secure_cost_model(config: RunConfig) -> SecureCostModel | None:
    """The cost model of ``deploy.secure_aggregation`` (``None`` when it is off)."""
    deploy = config.deploy
    if deploy.secure_aggregation == "none":
        return None
    return SecureCostModel(
        degree=deploy.secure_degree,
        all_pairs=deploy.secure_aggregation == "secagg",
        bits=deploy.secure_bits,
        threshold=deploy.secure_threshold,
    )

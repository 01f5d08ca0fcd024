"""A run config turned into a server's parts and a client's data: the registry at the edge.

Both sides build from the same config sections as the simulator (``fedsys.parts.builders``),
so a deployment trains the same model on the same shards as its simulation.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from fedsys.aggregation.config import DPFedAvgConfig
from fedsys.config.schema import DatasetConfig, ModelConfig, RunConfig
from fedsys.data import fedscale, leaf
from fedsys.data.federated import FederatedDataset
from fedsys.deploy.client import DataProvider, LocalData
from fedsys.deploy.state import ServerParts
from fedsys.parts.builders import build_dataset, build_model, build_trainer, complete_strategy
from fedsys.wire.transport import ChannelSecurity, ServerSecurity


def server_parts(config: RunConfig) -> ServerParts:
    """Model, test set, selector, strategy, codec and validator of ``config``.

    DP noise in a deployment must not be predictable from the config, so a DP
    strategy is seeded from the operating system's CSPRNG, not from ``seed``.
    """
    dataset = build_dataset(config.dataset, config.seed)
    model = build_model(config.model, dataset, config.seed)
    strategy_config = complete_strategy(config)
    strategy_seed = (
        secrets.randbits(63) if isinstance(strategy_config, DPFedAvgConfig) else config.seed
    )
    strategy = strategy_config.build(strategy_seed)
    return ServerParts(
        config=config,
        model=model,
        test_features=dataset.test_features,
        test_labels=dataset.test_labels,
        selector=config.selector.build(config.seed),
        strategy=strategy,
        train=build_trainer(config.train, strategy).config,
        compressor=config.compression.build(),
        validator=config.validation.build(),
    )


def _sections(run: dict[str, Any]) -> tuple[DatasetConfig, ModelConfig, int]:
    dataset = DatasetConfig.model_validate(run["dataset"])
    model = ModelConfig.model_validate(run["model"])
    return dataset, model, int(run["seed"])


def shard_provider(index: int) -> DataProvider:
    """Client ``index``'s shard of the run's built-in dataset (demos and tests).

    Raises
    ------
    ValueError
        If the run's dataset has no client ``index``.
    """

    def provide(run: dict[str, Any]) -> LocalData:
        dataset_config, model_config, seed = _sections(run)
        dataset = build_dataset(dataset_config, seed)
        if not 0 <= index < dataset.num_clients:
            raise ValueError(
                f"--data-index {index} is out of range: the run's dataset has "
                f"{dataset.num_clients} clients"
            )
        features, labels = dataset.client_data(index)
        return LocalData(build_model(model_config, dataset, seed), features, labels)

    return provide


def folder_provider(path: Path) -> DataProvider:
    """All training data in a local LEAF JSON folder or FedScale mapping CSV (a device's own).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    """

    def provide(run: dict[str, Any]) -> LocalData:
        _, model_config, seed = _sections(run)
        dataset = load_local(path)
        return LocalData(
            build_model(model_config, dataset, seed),
            dataset.features,
            dataset.labels,
        )

    return provide


def load_local(path: Path) -> FederatedDataset:
    """A LEAF folder (``train/*.json``) or a FedScale ``client_data_mapping`` CSV."""
    if not path.exists():
        raise FileNotFoundError(f"client data not found: {path}")
    if path.suffix == ".csv":
        return fedscale.load_fedscale_mapping(path, path.parent)
    return leaf.load_leaf(path)


def server_security(config: RunConfig, output_dir: Path) -> ServerSecurity:
    """TLS of the server: ``deploy.cert_dir`` or ``<output_dir>/pki`` unless insecure."""
    deploy = config.deploy
    if deploy.insecure:
        return ServerSecurity(insecure=True)
    cert_dir = Path(deploy.cert_dir) if deploy.cert_dir else output_dir / "pki"
    return ServerSecurity(cert_dir=cert_dir, mutual_tls=deploy.mutual_tls)


def tokens_path(config: RunConfig, output_dir: Path) -> Path:
    """The server's token file: ``deploy.tokens``, else ``tokens.json`` beside the certificates."""
    if config.deploy.tokens:
        return Path(config.deploy.tokens)
    cert_dir = Path(config.deploy.cert_dir) if config.deploy.cert_dir else output_dir / "pki"
    return cert_dir / "tokens.json"


def channel_security(
    ca: Path | None, cert: Path | None, key: Path | None, insecure: bool
) -> ChannelSecurity:
    """TLS of a client from its command-line flags."""
    return ChannelSecurity(ca_path=ca, cert_path=cert, key_path=key, insecure=insecure)

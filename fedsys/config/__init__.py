"""Run configuration: typed schema, file loading and readable errors."""

from fedsys.config.loader import ConfigError, apply_overrides, load_config, parse_config
from fedsys.config.schema import (
    AsyncRounds,
    ClockConfig,
    DatasetConfig,
    DeadlineRounds,
    DevicesConfig,
    EvalConfig,
    ModelConfig,
    RunConfig,
    SimConfig,
    SyncRounds,
    TrainSettings,
)

__all__ = [
    "AsyncRounds",
    "ClockConfig",
    "ConfigError",
    "DatasetConfig",
    "DeadlineRounds",
    "DevicesConfig",
    "EvalConfig",
    "ModelConfig",
    "RunConfig",
    "SimConfig",
    "SyncRounds",
    "TrainSettings",
    "apply_overrides",
    "load_config",
    "parse_config",
]

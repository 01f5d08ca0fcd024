import pytest
from pydantic import TypeAdapter, ValidationError

from fedsys.aggregation import (
    CompressorConfig,
    DPFedAvg,
    FedAdam,
    FedAdamConfig,
    FedYogiConfig,
    Int8Quantizer,
    MultiKrum,
    NoCompression,
    StrategyConfig,
    TopK,
    TopKInt8,
    UpdateValidationConfig,
)

STRATEGY = TypeAdapter(StrategyConfig)
COMPRESSOR = TypeAdapter(CompressorConfig)


def test_fedadam_defaults_are_reddi_et_al():
    config = FedAdamConfig()
    strategy = config.build()

    assert isinstance(strategy, FedAdam)
    assert (config.beta1, config.beta2, config.tau) == (0.9, 0.99, 1e-3)
    assert strategy.settings.server_lr == config.server_lr


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "fedyogi", "beta1": 1.0},
        {"name": "fedadam", "tau": 0.0},
        {"name": "fedavgm", "momentum": -0.1},
        {"name": "trimmed_mean", "trim_fraction": 0.5},
        {"name": "krum", "num_byzantine": -1},
        {"name": "qfedavg", "client_lr": 0.0},
        {"name": "dp_fedavg", "clients_per_round": 20, "population_size": 10},
        {"name": "dp_fedavg", "clients_per_round": 2, "population_size": 10, "target_delta": 1},
        {"name": "no_such_rule"},
    ],
)
def test_out_of_bounds_settings_are_rejected(fields):
    with pytest.raises(ValidationError):
        STRATEGY.validate_python(fields)


@pytest.mark.parametrize(
    ("fields", "named"),
    [({"name": "qfedavg"}, "client_lr"), ({"name": "dp_fedavg"}, "population_size")],
)
def test_building_without_run_derived_settings_names_them(fields, named):
    config = STRATEGY.validate_python(fields)

    with pytest.raises(ValueError, match=named):
        config.build()


def test_yaml_like_dicts_build_the_right_strategy():
    dp = STRATEGY.validate_python(
        {
            "name": "dp_fedavg",
            "clip_norm": 0.5,
            "noise_multiplier": 1.2,
            "clients_per_round": 10,
            "population_size": 500,
            "sampling": "fixed_size",
            "epsilon_budget": 8.0,
            "on_budget_exceeded": "warn",
        }
    ).build(seed=42)
    multikrum = STRATEGY.validate_python({"name": "multikrum", "num_byzantine": 2}).build()

    assert isinstance(dp, DPFedAvg)
    assert (dp.clip_norm, dp.seed, dp.accountant.sampling) == (0.5, 42, "fixed_size")
    assert dp.accountant.sampling_probability == pytest.approx(0.02)
    assert isinstance(multikrum, MultiKrum) and multikrum.num_selected is None
    assert FedYogiConfig(server_lr=0.05).build().settings.server_lr == 0.05


@pytest.mark.parametrize(
    ("fields", "cls"),
    [
        ({"name": "none"}, NoCompression),
        ({"name": "int8", "chunk_size": 64}, Int8Quantizer),
        ({"name": "topk", "fraction": 0.1}, TopK),
        ({"name": "topk_int8", "fraction": 0.1}, TopKInt8),
    ],
)
def test_compressor_configs(fields, cls):
    assert isinstance(COMPRESSOR.validate_python(fields).build(), cls)


def test_compressor_bounds_and_unknown_keys():
    with pytest.raises(ValidationError):
        COMPRESSOR.validate_python({"name": "topk", "fraction": 0.0})
    with pytest.raises(ValidationError, match="ratio"):
        COMPRESSOR.validate_python({"name": "topk", "ratio": 0.1})


def test_validation_config():
    assert UpdateValidationConfig(max_norm=5.0).build().max_norm == 5.0
    with pytest.raises(ValidationError):
        UpdateValidationConfig(max_norm=-1.0)

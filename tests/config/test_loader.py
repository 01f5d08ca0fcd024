import pytest

from fedsys.config import ConfigError, load_config, parse_config
from fedsys.config.loader import apply_overrides


def test_defaults_validate() -> None:
    config = parse_config({})
    assert config.dataset.name == "digits"
    assert config.round.mode == "sync"


def test_unknown_top_level_key_is_named_with_allowed_keys(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("rounds: 3\nroundz: 4\n")
    with pytest.raises(ConfigError, match=r"roundz: unknown key \(allowed keys: .*rounds"):
        load_config(path)


def test_unknown_nested_key_inside_a_union_member_is_named() -> None:
    with pytest.raises(ConfigError, match=r"dataset\.partition\.alfa: unknown key.*alpha, kind"):
        parse_config({"dataset": {"partition": {"kind": "dirichlet", "alfa": 0.3}}})


def test_bad_value_names_key_and_allowed_values() -> None:
    with pytest.raises(ConfigError, match=r"dataset\.name: .*'digits', 'mnist1d'"):
        parse_config({"dataset": {"name": "cifar"}})
    with pytest.raises(ConfigError, match=r"round\.overcommit"):
        parse_config({"round": {"mode": "sync", "overcommit": 0.5}})


def test_missing_required_field_of_a_mode_is_named() -> None:
    with pytest.raises(ConfigError, match=r"round\.deadline_s: Field required"):
        parse_config({"round": {"mode": "deadline"}})


def test_cross_field_rule() -> None:
    with pytest.raises(ConfigError, match="clients_per_round"):
        parse_config({"clients_per_round": 500, "dataset": {"num_clients": 100}})


def test_toml_and_overrides(tmp_path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('rounds = 3\n[dataset]\nname = "mnist1d"\n')
    config = load_config(path, {"dataset.num_clients": 20, "clients_per_round": 5})
    assert config.rounds == 3
    assert config.dataset.name == "mnist1d"
    assert config.dataset.num_clients == 20


def test_missing_and_malformed_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rounds: [1,\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(bad)


def test_switching_a_variant_drops_the_old_variants_settings() -> None:
    raw = {"round": {"mode": "sync", "overcommit": 1.3}, "dataset": {"num_clients": 50}}

    config = parse_config(
        apply_overrides(
            raw, {"round.buffer_size": 4, "round.mode": "async", "dataset.name": "mnist1d"}
        )
    )

    assert config.round.mode == "async"
    assert config.round.buffer_size == 4
    assert config.dataset.num_clients == 50  # a plain key like dataset.name clears nothing

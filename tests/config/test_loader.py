import pytest

from fedsys.config import ConfigError, load_config, parse_config
from fedsys.config.loader import MAX_FILE_BYTES, apply_overrides, load_yaml_file


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


BILLION_LAUGHS = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
)


def test_any_named_yaml_file_refuses_aliases_duplicates_and_size(tmp_path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BILLION_LAUGHS)
    with pytest.raises(ConfigError, match=r"anchors and aliases .* at line 1, column 4"):
        load_yaml_file(bomb, "sites file")
    twice = tmp_path / "twice.yaml"
    twice.write_text("sites: 1\nsites: 2\n")
    with pytest.raises(ConfigError, match="duplicate key 'sites'"):
        load_yaml_file(twice, "sites file")
    big = tmp_path / "big.yaml"
    big.write_text("x: " + "y" * 2048 + "\n")
    with pytest.raises(ConfigError, match="larger than 1 KiB"):
        load_yaml_file(big, "sites file", max_bytes=1024)
    assert load_yaml_file(big, "sites file") == {"x": "y" * 2048}


def test_config_files_share_the_size_limit(tmp_path) -> None:
    path = tmp_path / "huge.yaml"
    with open(path, "w") as file:
        file.write("rounds: 3\n")
        file.write("# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    with pytest.raises(ConfigError, match=r"config file .* is larger than"):
        load_config(path)

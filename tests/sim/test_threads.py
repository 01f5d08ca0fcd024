"""``sim.threads``: the simulator trains on the threads the setting gives, then restores."""

from __future__ import annotations

import pytest
import torch
import yaml

from fedsys.config.loader import ConfigError, apply_overrides, parse_config
from fedsys.config.resolve import default_config_text
from fedsys.metrics.records import RoundRecord
from fedsys.sim.simulator import Simulator


def _tiny(**overrides: object):
    raw = yaml.safe_load(default_config_text())
    settings = {"rounds": 2, "eval.every": 2, "dataset.num_clients": 20, **overrides}
    return parse_config(apply_overrides(raw, settings))


@pytest.mark.parametrize(("setting", "expected"), [("auto", 1), (2, 2)])
def test_the_run_trains_on_the_configured_threads_and_restores_them(
    setting: object, expected: int
) -> None:
    simulator = Simulator.from_config(_tiny(**{"sim.threads": setting}))
    seen: list[int] = []

    def on_round(record: RoundRecord) -> None:
        seen.append(torch.get_num_threads())

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        simulator.run(on_round=on_round)
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)

    assert simulator.torch_threads() == expected
    assert seen == [expected, expected]
    assert after == 3


@pytest.mark.parametrize("setting", [0, "all", True])
def test_a_bad_threads_setting_is_one_line_naming_the_key(setting: object) -> None:
    with pytest.raises(ConfigError) as error:
        _tiny(**{"sim.threads": setting})

    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("invalid configuration: sim.threads: expected a positive number")


def test_threads_is_a_key_of_every_backend() -> None:
    assert _tiny(**{"sim.backend": "vectorized", "sim.threads": 2}).sim.threads == 2

"""DP-FedAvg's epsilon matches dp-accounting for the sampling the simulator really performed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dp_accounting
import numpy as np
import pytest
from dp_accounting.rdp import RdpAccountant

from fedsys.config.loader import ConfigError, parse_config
from fedsys.selection.random import RandomSelector
from fedsys.sim.simulator import Simulator

Z, DELTA = 1.3, 1e-5


class CountingRandom(RandomSelector):
    """The random selector, also counting every draw it makes: (available, picked)."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed=seed)
        self.draws: list[tuple[int, int]] = []

    def select(self, state, round_idx, available, k, now_s):  # type: ignore[no-untyped-def]
        chosen, state = super().select(state, round_idx, available, k, now_s)
        self.draws.append((len(available), len(chosen)))
        return chosen, state


def _raw(**round_settings: Any) -> dict[str, Any]:
    return {
        "seed": 1,
        "rounds": 8,
        "clients_per_round": 5,
        "target_accuracy": None,
        "dataset": {"name": "digits", "num_clients": 40},
        "train": {"local_steps": 2, "batch_size": 8},
        "devices": {"source": "generated", "always_available": False, "model_cost_ratio": 50.0},
        "strategy": {"name": "dp_fedavg", "noise_multiplier": Z, "target_delta": DELTA},
        "round": {"mode": "sync", **round_settings},
        "eval": {"every": 8},
    }


def _epsilon(events: list[dp_accounting.DpEvent], relation: Any) -> float:
    accountant = RdpAccountant(neighboring_relation=relation)
    for event in events:
        accountant.compose(event)
    return float(accountant.get_epsilon(DELTA))


def test_poisson_participation_is_accounted_as_poisson_at_k_over_n() -> None:
    # Prepare: dp_fedavg with the random selector draws Poisson by default.
    config = parse_config(_raw())
    simulator = Simulator.from_config(config)
    # Act
    result = simulator.run()
    # Assert: every online client was drawn independently at q = 5/40.
    draws = [record.extra["draw"] for record in result.records]
    online = sum(n for n, _ in draws)
    joined = sum(m for _, m in draws)
    assert len({m for _, m in draws}) > 1  # Poisson sizes vary round to round
    q = 5 / 40
    assert abs(joined - q * online) < 4 * np.sqrt(online * q * (1 - q))
    assert [r.selected for r in result.records] == [m for _, m in draws]
    event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(Z))
    expected = _epsilon([event] * 8, dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)
    summary = result.summary()
    assert summary["privacy"]["sampling"] == "poisson"
    assert summary["privacy"]["q"] == pytest.approx(q)
    assert summary["privacy"]["rounds"] == 8
    np.testing.assert_allclose(summary["privacy"]["epsilon"], expected, rtol=1e-9)


@pytest.mark.parametrize("mode", [{"overcommit": 1.3}, {"overcommit": 1.0}])
def test_fixed_size_overcommitted_draws_are_accounted_draw_by_draw(mode: dict[str, Any]) -> None:
    # Prepare: the selector keeps the participants; count its real draws.
    config = parse_config(_raw(participation="selector", **mode))
    simulator = Simulator.from_config(config)
    counting = CountingRandom(seed=config.seed)
    simulator.selector = counting
    # Act
    result = simulator.run()
    # Assert: one fixed-size, without-replacement event per draw, of the online clients.
    assert len(counting.draws) == 8
    assert [r.extra["draw"] for r in result.records] == [list(d) for d in counting.draws]
    assert len({n for n, _ in counting.draws}) > 1  # availability changes the population
    events = [
        dp_accounting.SampledWithoutReplacementDpEvent(n, m, dp_accounting.GaussianDpEvent(Z / 2))
        for n, m in counting.draws
    ]
    expected = _epsilon(events, dp_accounting.NeighboringRelation.REPLACE_ONE)
    privacy = result.summary()["privacy"]
    assert privacy["sampling"] == "fixed_size"
    assert privacy["q"] == pytest.approx(max(m / n for n, m in counting.draws))
    np.testing.assert_allclose(privacy["epsilon"], expected, rtol=1e-9)
    np.testing.assert_allclose(result.records[-1].extra["epsilon"], expected, rtol=1e-9)


def test_async_rounds_divide_and_account_by_the_updates_aggregated() -> None:
    raw = _raw()
    raw["round"] = {"mode": "async", "max_concurrency": 8, "buffer_size": 3}
    simulator = Simulator.from_config(parse_config(raw))

    result = simulator.run()

    assert simulator.strategy.accountant.clients_per_round == 3
    draws = [tuple(r.extra["draw"]) for r in result.records]
    assert len(draws) == raw["rounds"] == 8
    assert all(m == 3 == r.participants for (_, m), r in zip(draws, result.records, strict=True))
    events = [
        dp_accounting.SampledWithoutReplacementDpEvent(n, m, dp_accounting.GaussianDpEvent(Z / 2))
        for n, m in draws
    ]
    expected = _epsilon(events, dp_accounting.NeighboringRelation.REPLACE_ONE)
    np.testing.assert_allclose(result.summary()["privacy"]["epsilon"], expected, rtol=1e-9)


def test_leaf_population_is_the_users_in_the_files(tmp_path: Path) -> None:
    # Prepare: 12 LEAF users; dataset.num_clients keeps its default of 100.
    users = {f"u{i}": {"x": [[float(i), 1.0, 0.0, 2.0]] * 4, "y": [i % 2] * 4} for i in range(12)}
    for split in ("train", "test"):
        (tmp_path / split).mkdir()
        data = {"users": list(users), "user_data": users, "num_samples": [4] * 12}
        (tmp_path / split / f"d_{split}.json").write_text(json.dumps(data))
    raw = _raw()
    raw["dataset"] = {"name": "leaf", "path": str(tmp_path)}
    raw["model"] = {"name": "logreg"}
    # Act
    simulator = Simulator.from_config(parse_config(raw))
    # Assert
    assert simulator.strategy.accountant.population_size == 12
    assert simulator.strategy.accountant.sampling_probability == pytest.approx(5 / 12)


@pytest.mark.parametrize("selector", ["oort", "power_of_choice"])
def test_data_dependent_selection_with_dp_is_refused_without_acknowledgement(
    selector: str,
) -> None:
    raw = _raw(participation="selector")
    raw["selector"] = {"name": selector}

    with pytest.raises(ConfigError, match="acknowledge_selection_not_private"):
        parse_config(raw)
    raw["strategy"]["acknowledge_selection_not_private"] = True
    assert parse_config(raw).selector.name == selector


def test_poisson_participation_with_a_selector_that_would_be_ignored_is_refused() -> None:
    raw = _raw(participation="poisson")
    raw["selector"] = {"name": "oort"}
    raw["strategy"]["acknowledge_selection_not_private"] = True

    with pytest.raises(ConfigError, match="would be ignored"):
        parse_config(raw)

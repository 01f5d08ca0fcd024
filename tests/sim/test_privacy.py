"""DP-FedAvg's epsilon matches dp-accounting for the sampling the simulator really performed."""

from __future__ import annotations

import json
from collections import Counter
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


def _wor(draws: list[tuple[int, int]]) -> float:
    events = [
        dp_accounting.SampledWithoutReplacementDpEvent(n, m, dp_accounting.GaussianDpEvent(Z / 2))
        for n, m in draws
    ]
    return _epsilon(events, dp_accounting.NeighboringRelation.REPLACE_ONE)


def test_async_epsilon_bounds_independent_accounts_of_the_logged_draws() -> None:
    # Prepare: a pipeline four buffers deep, so the first refill draws 12 clients at once.
    raw = _raw()
    raw["rounds"] = 10
    raw["round"] = {"mode": "async", "max_concurrency": 12, "buffer_size": 3}
    simulator = Simulator.from_config(parse_config(raw))
    # Act
    result = simulator.run()
    # Assert: updates are still divided by the buffer size.
    assert simulator.strategy.accountant.clients_per_round == 3
    records = result.records
    assert len(records) == 10 and all(r.participants == 3 for r in records)
    # The run logged, for each aggregated client, the draw that launched it.
    first = records[0].extra["client_draws"]
    assert all(drawn == 12 for _, _, drawn in first)  # the first refill: max_concurrency
    # Independent account 1: each client's aggregations as unamplified Gaussian releases.
    releases = Counter(c for r in records for c in set(r.extra["clients"]))
    most = max(releases.values())
    per_client = _epsilon(
        [dp_accounting.GaussianDpEvent(Z / 2)] * most, dp_accounting.NeighboringRelation.REPLACE_ONE
    )
    # Independent account 2: each aggregation as a draw of every client its refills drew.
    union = []
    for r in records:
        refills = {tuple(d) for d in r.extra["client_draws"]}
        online = min(n for _, n, _ in refills)
        union.append((online, min(online, sum(m for _, _, m in refills))))
    sampled = _wor(union)
    # What was reported before: a draw of the buffer from its smallest population.
    understated = _wor([(min(n for _, n, _ in r.extra["client_draws"]), 3) for r in records])
    privacy = result.summary()["privacy"]
    assert privacy["sampling"] == "async_per_client"
    assert privacy["max_client_releases"] == most
    assert privacy["epsilon"] >= per_client * (1 - 1e-9)
    assert privacy["epsilon"] >= sampled * (1 - 1e-9)
    np.testing.assert_allclose(privacy["epsilon"], max(per_client, sampled), rtol=1e-9)
    assert privacy["epsilon"] > understated * 1.05
    np.testing.assert_allclose(records[-1].extra["epsilon"], privacy["epsilon"], rtol=1e-9)


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


def test_async_privacy_ledger_survives_a_resume(tmp_path: Path) -> None:
    raw = _raw()
    raw["round"] = {"mode": "async", "max_concurrency": 8, "buffer_size": 3}
    whole = Simulator.from_config(parse_config(raw)).run()
    checkpoint = tmp_path / "checkpoint.pt"
    first = Simulator.from_config(parse_config(raw))
    first.checkpoint_path = checkpoint
    stopped = first.run(should_stop=lambda: len(first.records_) == 4)
    second = Simulator.from_config(parse_config(raw))
    second.checkpoint_path = checkpoint

    resumed = second.run(resume_from=checkpoint)

    assert stopped.status == "interrupted" and resumed.status == "completed"
    assert [r.extra["client_draws"] for r in resumed.records] == [
        r.extra["client_draws"] for r in whole.records
    ]
    assert resumed.summary()["privacy"] == whole.summary()["privacy"]

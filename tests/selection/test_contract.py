"""The contract every :class:`Selector` keeps, checked on each one built from config.

To cover a new selector, add its config dict to ``SELECTOR_CONFIGS``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from pydantic import TypeAdapter

from fedsys.core.update import ClientReport, LossStats
from fedsys.selection.base import Selector
from fedsys.selection.config import SelectorConfig
from fedsys.selection.priors import UsesClientPriors

SELECTOR_CONFIGS: list[dict[str, Any]] = [
    {"name": "random"},
    {"name": "power_of_choice"},
    {"name": "oort"},
    {"name": "oort", "pacer_step": 1, "blacklist_rounds": 1, "exploration_min": 0.0},
    {"name": "availability"},
    {"name": "availability", "base": {"name": "random"}, "pool": 2.0},
]


def _build(config: dict[str, Any], seed: int = 11) -> Selector[Any]:
    return TypeAdapter(SelectorConfig).validate_python(config).build(seed)


def _reports(picked: list[int], round_idx: int) -> list[ClientReport]:
    """Completed reports for most, a dropout for every third client."""
    out = []
    for cid in picked:
        loss = LossStats(mean_loss=cid % 7 + 0.5, sum_sq_loss=float(cid % 5 + 1), samples_seen=1)
        done = cid % 3 != 0
        out.append(ClientReport(cid, round_idx, 1.0 + cid % 4, 10 + cid, done, loss))
    return out


def _history(selector: Selector[Any], rounds: int, rng_seed: int = 0) -> tuple[list[Any], Any]:
    """Picks and final state over ``rounds`` rounds with varying availability."""
    rng = np.random.default_rng(rng_seed)
    state = selector.init_state()
    if isinstance(selector, UsesClientPriors):
        state = selector.with_priors(state, np.arange(10.0, 70.0), np.linspace(1.0, 5.0, 60))
    picks = []
    for round_idx in range(rounds):
        available = np.flatnonzero(rng.random(60) < 0.6)
        picked, state = selector.select(state, round_idx, available, 8, float(round_idx))
        picks.append(picked)
        state = selector.feedback(state, _reports(picked, round_idx))
    return picks, state


@pytest.fixture(params=SELECTOR_CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
def config(request: pytest.FixtureRequest) -> dict[str, Any]:
    return request.param


def test_same_seed_same_selection(config: dict[str, Any]) -> None:
    assert _history(_build(config), 8)[0] == _history(_build(config), 8)[0]


def test_picks_are_distinct_available_and_as_many_as_possible(config: dict[str, Any]) -> None:
    selector = _build(config)
    rng = np.random.default_rng(1)
    state = selector.init_state()
    for round_idx in range(12):
        available = rng.permutation(np.flatnonzero(rng.random(40) < 0.5))
        k = int(rng.integers(0, 12))
        picked, state = selector.select(state, round_idx, available, k, 0.0)
        assert len(picked) == len(set(picked)) == min(k, len(available))
        assert set(picked) <= set(available.tolist())
        assert all(isinstance(c, int) for c in picked)
        state = selector.feedback(state, _reports(picked, round_idx))


def test_pool_smaller_than_k_and_empty_pool(config: dict[str, Any]) -> None:
    selector = _build(config)
    state = selector.init_state()
    picked, state = selector.select(state, 0, np.array([42, 7, 19]), 10, 0.0)
    assert sorted(picked) == [7, 19, 42]
    assert selector.select(state, 1, np.array([], dtype=np.int64), 10, 0.0)[0] == []
    assert selector.select(state, 1, np.array([1, 2]), 0, 0.0)[0] == []


def test_state_round_trips_and_resumes_identically(config: dict[str, Any]) -> None:
    selector = _build(config)
    _, state = _history(selector, 6)
    if not hasattr(state, "to_dict"):
        pytest.skip("stateless selector")
    restored = type(state).from_dict(json.loads(json.dumps(state.to_dict(), allow_nan=False)))
    available = np.arange(60)
    assert (
        selector.select(restored, 6, available, 8, 0.0)[0]
        == selector.select(state, 6, available, 8, 0.0)[0]
    )


def test_select_does_not_change_the_state_it_was_given(config: dict[str, Any]) -> None:
    selector = _build(config)
    _, state = _history(selector, 3)
    before = json.dumps(state.to_dict()) if hasattr(state, "to_dict") else None
    selector.select(state, 3, np.arange(60), 8, 0.0)
    selector.feedback(state, _reports([1, 2, 3], 3))
    after = json.dumps(state.to_dict()) if hasattr(state, "to_dict") else None
    assert before == after


def test_selectors_that_use_priors_are_recognised_by_interface() -> None:
    assert isinstance(_build({"name": "oort"}), UsesClientPriors)
    assert isinstance(_build({"name": "power_of_choice"}), UsesClientPriors)
    assert not isinstance(_build({"name": "random"}), UsesClientPriors)

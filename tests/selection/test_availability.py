"""Availability-aware selection: feasibility, leaving-soon priority, the runtime feed."""

from __future__ import annotations

import numpy as np
import pytest

from fedsys.core.update import ClientReport, LossStats
from fedsys.selection.availability import (
    AvailabilityAwareSelector,
    UsesAvailability,
    feed_availability,
    remaining_online_s,
)
from fedsys.selection.oort import OortSelector
from fedsys.selection.priors import UsesClientPriors, feed_priors
from fedsys.selection.random import RandomSelector


def _fed(selector: AvailabilityAwareSelector, until: np.ndarray, expected: np.ndarray, now: float):
    """State of ``selector`` told every client's expected duration and session end."""
    ids = np.arange(len(until))
    state = feed_priors(selector, selector.init_state(), ids, np.full(len(ids), 20.0), expected)
    return feed_availability(selector, state, ids, until, now)


def test_remaining_online_time_is_the_session_end_minus_now() -> None:
    until = np.array([150.0, np.inf, np.nan, 90.0])
    np.testing.assert_allclose(remaining_online_s(until, 100.0), [50.0, np.inf, np.nan, 0.0])


def test_interfaces_are_recognised_and_others_are_left_alone() -> None:
    wrapper = AvailabilityAwareSelector(OortSelector(seed=0))
    assert isinstance(wrapper, UsesAvailability)
    assert isinstance(wrapper, UsesClientPriors)
    plain = RandomSelector(seed=0)
    assert not isinstance(plain, UsesAvailability)
    assert feed_availability(plain, "state", np.arange(3), np.zeros(3), 0.0) == "state"


@pytest.mark.parametrize("base", ["random", "oort"])
def test_a_client_that_would_drop_is_never_picked_when_enough_others_are_available(
    base: str,
) -> None:
    # Prepare: 12 clients need 100 s; clients 0, 3, 6, 9 leave within 60 s.
    until = np.full(12, 1_000.0)
    leaving = np.array([0, 3, 6, 9])
    until[leaving] = 60.0
    expected = np.full(12, 100.0)
    inner = RandomSelector(seed=3) if base == "random" else OortSelector(seed=3)
    selector = AvailabilityAwareSelector(inner, margin=1.0, pool=1.5)
    state = _fed(selector, until, expected, now=0.0)
    # Act: many rounds, 8 of the 8 feasible wanted each time.
    for round_idx in range(40):
        picked, state = selector.select(state, round_idx, np.arange(12), 8, 0.0)
        reports = [
            ClientReport(c, round_idx, 100.0, 20, True, LossStats(1.0 + c, 2.0 + c, 20))
            for c in picked
        ]
        state = selector.feedback(state, reports)
        # Assert
        assert len(picked) == 8
        assert not set(picked) & set(leaving.tolist())


def test_short_of_feasible_clients_the_ones_with_most_time_to_spare_fill_the_round() -> None:
    until = np.array([1_000.0, 1_000.0, 90.0, 50.0, 10.0])
    selector = AvailabilityAwareSelector(RandomSelector(seed=0), pool=1.0)
    state = _fed(selector, until, np.full(5, 100.0), now=0.0)
    picked, _ = selector.select(state, 0, np.arange(5), 3, 0.0)
    assert sorted(picked) == [0, 1, 2]


def test_of_the_base_candidates_the_soonest_to_leave_are_kept() -> None:
    # All feasible; pool 2 lets the base offer 6 candidates for 3 slots.
    until = np.array([500.0, 900.0, 300.0, 800.0, 200.0, 700.0, 400.0, 600.0])
    selector = AvailabilityAwareSelector(RandomSelector(seed=5), pool=2.0)
    state = _fed(selector, until, np.full(8, 100.0), now=0.0)
    candidates, _ = RandomSelector(seed=5).select(None, 4, np.arange(8), 6, 0.0)
    picked, _ = selector.select(state, 4, np.arange(8), 3, 0.0)
    expected = sorted(candidates, key=lambda c: until[c])[:3]
    assert picked == expected


def test_a_measured_duration_replaces_the_prior_and_a_dropout_teaches_nothing() -> None:
    selector = AvailabilityAwareSelector(RandomSelector(seed=0))
    state = _fed(selector, np.full(3, 1_000.0), np.array([10.0, 10.0, 10.0]), now=0.0)
    state = selector.feedback(
        state,
        [
            ClientReport(0, 0, 400.0, 5, False, outcome="straggled"),
            ClientReport(1, 0, 3.0, 5, False, outcome="dropped"),
        ],
    )
    np.testing.assert_allclose(state.expected_s, [400.0, 10.0, 10.0])
    # Client 0 now needs 400 s but has 300 s left: it is no longer feasible.
    state = feed_availability(selector, state, np.arange(3), np.full(3, 1_000.0), 700.0)
    np.testing.assert_array_equal(
        selector.feasible(state, np.arange(3), 700.0), [False, True, True]
    )


def test_unknown_session_end_or_duration_counts_as_feasible() -> None:
    selector = AvailabilityAwareSelector(RandomSelector(seed=0))
    state = selector.init_state()
    state = feed_availability(selector, state, np.arange(2), np.array([np.nan, 5.0]), 0.0)
    np.testing.assert_array_equal(selector.feasible(state, np.arange(3), 0.0), [True] * 3)


def test_feed_rejects_misaligned_session_ends() -> None:
    selector = AvailabilityAwareSelector(RandomSelector(seed=0))
    with pytest.raises(ValueError, match="online_until_s"):
        feed_availability(selector, selector.init_state(), np.arange(3), np.zeros(2), 0.0)


def test_config_builds_the_wrapper_around_the_named_base() -> None:
    from pydantic import TypeAdapter, ValidationError

    from fedsys.selection.config import SelectorConfig

    adapter = TypeAdapter(SelectorConfig)
    default = adapter.validate_python({"name": "availability"}).build(7)
    assert isinstance(default.base, OortSelector) and default.base.seed == 7
    custom = adapter.validate_python(
        {"name": "availability", "base": {"name": "random"}, "margin": 1.5, "pool": 1.0}
    ).build(3)
    assert isinstance(custom.base, RandomSelector)
    assert (custom.margin, custom.pool) == (1.5, 1.0)
    with pytest.raises(ValidationError, match="pool"):
        adapter.validate_python({"name": "availability", "pool": 0.5})

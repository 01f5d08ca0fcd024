"""Oort's training selector on crafted populations small enough to check by hand."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from fedsys.core.update import ClientReport, LossStats
from fedsys.selection.oort import OortSelector
from fedsys.selection.oort_state import OortState


def _report(cid: int, round_idx: int, rms: float, samples: int = 100, dur: float = 1.0):
    """A completed report whose loss has root mean square ``rms`` over ``samples``."""
    loss = LossStats(mean_loss=rms, sum_sq_loss=rms**2 * samples, samples_seen=samples)
    return ClientReport(cid, round_idx, dur, samples, completed=True, loss=loss)


def _explored(selector: OortSelector, rms: list[float], dur: list[float]) -> OortState:
    """State after every client trained once in round 0 (sizes 100)."""
    reports = [_report(i, 0, r, dur=d) for i, (r, d) in enumerate(zip(rms, dur, strict=True))]
    return selector.feedback(selector.init_state(), reports)


def _exploit_only(**kwargs: float) -> OortSelector:
    """Exploitation only; the pool is the cut-off alone unless ``exploit_pool`` is given."""
    settings = {"exploration_factor": 0.0, "exploration_min": 0.0, "exploit_pool": 1.0}
    return OortSelector(**{**settings, **kwargs})


def test_scores_match_hand_computation() -> None:
    # Prepare: utilities 100*[0.1, 0.2, 0.4] = [10, 20, 40]; durations [1, 1, 4]; T = 1.
    selector = OortSelector(clip_bound=1.0, round_threshold=50.0)
    state = _explored(selector, [0.1, 0.2, 0.4], [1.0, 1.0, 4.0])
    # Act
    preferred = selector.preferred_duration_s(state)
    scores = selector.scores(state, 1, np.array([0, 1, 2]), preferred)
    # Assert: min-max [0, 1/3, 1] + sqrt(0.1 ln 2 / 1); client 2 is 4x slower than T.
    bonus = math.sqrt(0.1 * math.log(2))
    assert preferred == 1.0
    np.testing.assert_allclose(scores, [bonus, 1 / 3 + bonus, (1 + bonus) / 16])


def test_utility_is_clipped_at_the_percentile_before_normalising() -> None:
    # Prepare: one outlier (utility 10_000) among 19 clients with utilities 100..1900.
    selector = OortSelector(staleness_coef=0.0)
    rms = [float(i) for i in range(1, 20)] + [100.0]
    state = _explored(selector, rms, [1.0] * 20)
    # Act: the nearest-rank 95th percentile of 20 values is the 19th smallest, 1900.
    scores = selector.scores(state, 1, np.arange(20), math.inf)
    # Assert: the outlier is clipped to the top, so the others keep their spread.
    np.testing.assert_allclose(scores[:19], (np.arange(1, 20) - 1) / 18)
    np.testing.assert_allclose(scores[19], 1.0)


def test_fast_high_loss_clients_are_preferred() -> None:
    # Prepare: 0-4 fast & high loss, 5-9 fast & low loss, 10-14 slow & high, 15-19 slow & low.
    selector = _exploit_only()
    rms = [2.0] * 5 + [0.1] * 5 + [2.0] * 5 + [0.1] * 5
    dur = [1.0] * 10 + [10.0] * 10
    state = _explored(selector, rms, dur)
    for round_idx in range(1, 6):
        # Act
        picked, _ = selector.select(state, round_idx, np.arange(20), 5, 0.0)
        # Assert: only the fast high-loss clients clear the cut-off.
        assert sorted(picked) == [0, 1, 2, 3, 4]


def test_exploitation_samples_above_the_cut_off_by_score() -> None:
    # Prepare: a smooth ladder of utilities, all fast; generous cut-off.
    selector = _exploit_only(cut_off_util=0.55, staleness_coef=0.0)
    state = _explored(selector, [float(i) for i in range(1, 11)], [1.0] * 10)
    counts = np.zeros(10)
    for round_idx in range(1, 201):
        # Act
        picked, _ = selector.select(state, round_idx, np.arange(10), 2, 0.0)
        counts[picked] += 1
    # Assert: scores are i/9; the 2nd is 8/9, so the cut-off 0.49 admits clients 5..9.
    assert counts[:5].sum() == 0
    assert counts[9] > counts[5]


def test_exploitation_pool_widens_to_exploit_pool_times_n_best() -> None:
    # Prepare: utilities 1..40 (scores (i-1)/39), all fast; the cut-off alone admits
    # the top 3 (scores >= 0.95 * 38/39); the pool widens to the best 10 * 2 = 20.
    selector = _exploit_only(staleness_coef=0.0, clip_bound=1.0, exploit_pool=10.0)
    state = _explored(selector, [float(i) for i in range(1, 41)], [1.0] * 40)
    counts = np.zeros(40)
    for round_idx in range(1, 301):
        # Act
        picked, _ = selector.select(state, round_idx, np.arange(40), 2, 0.0)
        counts[picked] += 1
    # Assert: every pick is among clients 20..39, and most of those get picked.
    assert counts[:20].sum() == 0
    assert (counts[20:] > 0).sum() >= 18
    assert counts[39] > counts[25]


def test_failed_first_tries_stop_taking_exploration_slots() -> None:
    # Prepare: 10 explored clients, and clients 10-12 that straggled on their first try.
    selector = OortSelector()
    state = _explored(selector, [1.0] * 10, [1.0] * 10)
    state = selector.feedback(state, [ClientReport(c, 0, 99.0, 100, False) for c in (10, 11, 12)])
    # Act
    picked, _ = selector.select(state, 1, np.arange(13), 5, 0.0)
    # Assert: nothing is left to explore; the slow clients are exploited only by
    # score, and their speed penalty ((1 / 99)**2) keeps them out.
    assert state.explored.all()
    assert max(picked) < 10


def test_exploration_reaches_every_unexplored_client() -> None:
    # Prepare: 10 explored high-utility clients, 20 never seen.
    selector = OortSelector()
    state = _explored(selector, [5.0] * 10, [1.0] * 10)
    for round_idx in range(1, 4):
        # Act
        picked, state = selector.select(state, round_idx, np.arange(30), 10, 0.0)
        if round_idx == 1:
            # 1 - 0.9 * 0.98 = 0.118 -> one exploitation slot, nine for exploration.
            assert sum(p >= 10 for p in picked) == 9
        state = selector.feedback(state, [_report(c, round_idx, 1.0) for c in picked])
    # Assert
    assert state.explored.all()


def test_exploration_prefers_fast_clients_with_more_data() -> None:
    # Prepare: 0-9 fast & big, 10-54 fast & small, 55-99 slow & big (T is the 30th pct = 1 s).
    selector = OortSelector()
    sizes = np.array([1000.0] * 10 + [10.0] * 45 + [1000.0] * 45)
    durations = np.array([1.0] * 55 + [100.0] * 45)
    state = selector.with_priors(selector.init_state(), sizes, durations)
    fast_big = []
    for round_idx in range(20):
        # Act
        picked, _ = selector.select(state, round_idx, np.arange(100), 10, 0.0)
        # Assert: slow clients fall outside the top 5k window; fast big ones dominate.
        assert max(picked) < 55
        fast_big.append(sum(p < 10 for p in picked))
    assert np.mean(fast_big) >= 8.5


def _run_pacer(selector: OortSelector, rounds: int, growth: float) -> list[float]:
    """Select all 10 clients each round; utility grows by ``growth`` per round."""
    state = selector.with_priors(selector.init_state(), np.full(10, 100.0), np.arange(1.0, 11.0))
    thresholds = []
    for round_idx in range(rounds):
        picked, state = selector.select(state, round_idx, np.arange(10), 10, 0.0)
        thresholds.append(state.round_threshold)
        rms = growth**round_idx
        reports = [_report(c, round_idx, rms, dur=float(c + 1)) for c in picked]
        state = selector.feedback(state, reports)
    return thresholds


def test_pacer_relaxes_threshold_when_utility_plateaus() -> None:
    # Prepare: window of 2 rounds; round 0 explores (not counted), then flat utility.
    selector = _exploit_only(pacer_step=2)
    # Act
    thresholds = _run_pacer(selector, rounds=9, growth=1.0)
    # Assert: round 4 compares [0,1] (1 round counted) with [2,3] (2): no change.
    # Rounds 6 and 8 see equal windows and relax by 5 each.
    assert thresholds == [30.0] * 6 + [35.0, 35.0, 40.0]


def test_pacer_holds_threshold_while_utility_grows() -> None:
    selector = _exploit_only(pacer_step=2)
    thresholds = _run_pacer(selector, rounds=9, growth=1.5)
    assert thresholds == [30.0] * 9


def test_pacer_raises_preferred_duration_and_caps_at_100() -> None:
    # Prepare: durations 1..10 s known from priors.
    selector = OortSelector(round_threshold=30.0)
    state = selector.with_priors(selector.init_state(), np.ones(10), np.arange(1.0, 11.0))
    # Act / Assert: nearest rank: 30th pct -> 3 s; 45th -> 5 s; 100 disables the penalty.
    assert selector.preferred_duration_s(state) == 3.0
    assert selector.preferred_duration_s(replace(state, round_threshold=45.0)) == 5.0
    assert selector.preferred_duration_s(replace(state, round_threshold=100.0)) == math.inf
    thresholds = _run_pacer(_exploit_only(pacer_step=1, pacer_delta=50.0), 6, growth=1.0)
    assert max(thresholds) == 100.0


def test_blacklist_caps_at_fraction_of_population_most_picked_first() -> None:
    # Prepare: picks per client [3, 5, 0, 0, 1, 4].
    picks = np.array([3, 5, 0, 0, 1, 4])
    loose = OortSelector(blacklist_rounds=2, blacklist_max_len=0.5)
    tight = OortSelector(blacklist_rounds=2, blacklist_max_len=0.34)
    state = replace(loose.init_state().resized(6), times_picked=picks)
    # Act / Assert
    np.testing.assert_array_equal(np.sort(loose.blacklist(state)), [0, 1, 5])
    np.testing.assert_array_equal(np.sort(tight.blacklist(state)), [1, 5])
    np.testing.assert_array_equal(OortSelector().blacklist(state), [])


def test_blacklisted_clients_are_skipped_unless_needed_to_fill() -> None:
    selector = OortSelector(blacklist_rounds=2, blacklist_max_len=0.5)
    state = replace(selector.init_state().resized(6), times_picked=np.array([3, 5, 0, 0, 1, 4]))
    picked, _ = selector.select(state, 1, np.arange(6), 3, 0.0)
    assert sorted(picked) == [2, 3, 4]
    picked, _ = selector.select(state, 1, np.arange(6), 5, 0.0)
    assert len(set(picked)) == 5
    assert {2, 3, 4} <= set(picked)


def test_picks_are_counted_and_blacklist_kicks_in() -> None:
    # Prepare: 4 picks over 3 clients -> someone was picked twice; the cap bans 1 of 3.
    selector = OortSelector(blacklist_rounds=1, blacklist_max_len=0.5)
    state = selector.init_state()
    for round_idx in range(2):
        _, state = selector.select(state, round_idx, np.arange(3), 2, 0.0)
    banned = set(selector.blacklist(state).tolist())
    # Act
    picked, state = selector.select(state, 2, np.arange(3), 2, 0.0)
    # Assert
    assert len(banned) == 1
    assert sorted(picked) == sorted({0, 1, 2} - banned)
    assert state.times_picked.sum() == 6


def test_pool_smaller_than_k_and_zero_scores_do_not_crash() -> None:
    # Prepare: identical utilities at round 0 -> every exploitation score is 0.
    selector = _exploit_only()
    state = _explored(selector, [1.0] * 4, [1.0] * 4)
    # Act
    picked, _ = selector.select(state, 0, np.array([3, 1, 2]), 10, 0.0)
    zero, _ = selector.select(state, 0, np.arange(4), 2, 0.0)
    # Assert
    assert sorted(picked) == [1, 2, 3]
    assert len(set(zero)) == 2


def test_same_seed_same_picks_different_seed_differs() -> None:
    state = OortSelector().with_priors(OortSelector().init_state(), np.arange(1.0, 201.0))
    first = [OortSelector(seed=7).select(state, r, np.arange(200), 10, 0.0)[0] for r in range(5)]
    again = [OortSelector(seed=7).select(state, r, np.arange(200), 10, 0.0)[0] for r in range(5)]
    other = [OortSelector(seed=8).select(state, r, np.arange(200), 10, 0.0)[0] for r in range(5)]
    assert first == again
    assert first != other


def test_exploration_schedule_decays_to_its_floor() -> None:
    selector = OortSelector()
    np.testing.assert_allclose(selector.exploration(0), 0.9)
    np.testing.assert_allclose(selector.exploration(1), 0.9 * 0.98)
    np.testing.assert_allclose(selector.exploration(1000), 0.3)


def test_state_with_a_different_pacer_window_is_rejected() -> None:
    state = OortSelector(pacer_step=5).init_state()
    with pytest.raises(ValueError, match="pacer window"):
        OortSelector(pacer_step=20).select(state, 0, np.arange(3), 2, 0.0)


def test_works_at_100k_registered_clients() -> None:
    # Prepare: 100k clients with priors, half available (timing lives in benchmarks/).
    rng = np.random.default_rng(0)
    selector = OortSelector(seed=1)
    state = selector.with_priors(
        selector.init_state(), rng.integers(10, 500, 100_000).astype(float), rng.random(100_000)
    )
    available = np.flatnonzero(rng.random(100_000) < 0.5)
    # Act
    picked, state = selector.select(state, 0, available, 100, 0.0)
    state = selector.feedback(state, [_report(c, 0, 1.0) for c in picked])
    picked_again, state = selector.select(state, 1, available, 100, 0.0)
    # Assert
    assert len(set(picked)) == len(set(picked_again)) == 100
    assert int(state.explored.sum()) == 100

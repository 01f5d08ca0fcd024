"""How reports and priors fold into Oort's state, and how the state checkpoints."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fedsys.core.update import ClientReport, LossStats
from fedsys.selection.oort import OortSelector
from fedsys.selection.oort_state import OortState, apply_reports
from fedsys.selection.priors import feed_priors


def test_utility_uses_every_trained_sample_not_the_last_batch() -> None:
    # Prepare: 40 samples seen with per-sample losses whose squares sum to 160 -> rms 2.
    loss = LossStats(mean_loss=1.5, sum_sq_loss=160.0, samples_seen=40)
    report = ClientReport(2, 0, duration_s=3.0, num_samples=25, completed=True, loss=loss)
    # Act
    state = apply_reports(OortState.empty(30.0, 20), [report])
    # Assert: |B_i| * sqrt(mean loss²) = 25 * 2; arrays grew to cover client 2.
    assert state.num_clients == 3
    np.testing.assert_allclose(state.utility, [np.nan, np.nan, 50.0])
    np.testing.assert_allclose(state.duration_s, [np.nan, np.nan, 3.0])
    np.testing.assert_array_equal(state.last_round, [-1, -1, 0])


def test_stragglers_get_the_round_mean_and_a_fresh_round_dropouts_teach_nothing() -> None:
    # Prepare: client 0 trained at 5 s with utility 10 * 2 = 20; client 1 at 1 s, 40.
    def done(cid: int, round_idx: int, rms: float) -> ClientReport:
        loss = LossStats(mean_loss=rms, sum_sq_loss=rms**2 * 10, samples_seen=10)
        return ClientReport(cid, round_idx, 5.0, 10, completed=True, loss=loss)

    state = apply_reports(OortState.empty(30.0, 20), [done(0, 0, 2.0)])
    # Act: in round 1 client 1 completes (utility 40) and client 0 straggles (>= 9 s);
    # in round 2 client 0 drops out after 2 s.
    straggle = ClientReport(0, 1, 9.0, 10, completed=False, outcome="straggled")
    slow = apply_reports(state, [done(1, 1, 4.0), straggle])
    drop = ClientReport(0, 2, 2.0, 10, completed=False, outcome="dropped")
    dropped = apply_reports(slow, [drop])
    # Assert: the straggler gets round 1's mean completed utility (40) and round 1, as
    # the reference code; its duration is a lower bound. The dropout changes nothing.
    np.testing.assert_allclose(slow.duration_s, [9.0, 5.0])
    np.testing.assert_allclose(slow.utility, [40.0, 40.0])
    np.testing.assert_array_equal(slow.last_round, [1, 1])
    for name in ("duration_s", "utility", "last_round", "num_samples"):
        np.testing.assert_array_equal(getattr(dropped, name), getattr(slow, name))


def test_a_rejected_update_is_never_rewarded() -> None:
    # Prepare: client 0 reports a huge loss but its update was refused by validation.
    loss = LossStats(mean_loss=50.0, sum_sq_loss=50.0**2 * 10, samples_seen=10)
    rejected = ClientReport(0, 0, 3.0, 10, completed=False, loss=loss, outcome="rejected")
    # Act
    state = apply_reports(OortState.empty(30.0, 20), [rejected])
    # Assert: explored with utility 0 and its measured duration.
    np.testing.assert_allclose(state.utility, [0.0])
    np.testing.assert_allclose(state.duration_s, [3.0])
    np.testing.assert_array_equal(state.last_round, [0])


def test_utility_counts_the_distinct_samples_processed() -> None:
    # 3 steps x 4 = 12 samples processed of 100 held; of 5 held, only 5 are distinct.
    loss = LossStats(mean_loss=1.0, sum_sq_loss=4.0 * 12, samples_seen=12)  # rms 2
    big = ClientReport(0, 0, 1.0, 100, True, loss, samples_processed=12)
    small = ClientReport(1, 0, 1.0, 5, True, loss, samples_processed=12)
    state = apply_reports(OortState.empty(30.0, 20), [big, small])
    np.testing.assert_allclose(state.utility, [24.0, 10.0])


def test_report_outcome_must_agree_with_completed() -> None:
    with pytest.raises(ValueError, match="contradicts"):
        ClientReport(0, 0, 1.0, 1, completed=True, outcome="rejected")
    with pytest.raises(ValueError, match="unknown report outcome"):
        ClientReport(0, 0, 1.0, 1, completed=False, outcome="lost")  # type: ignore[arg-type]
    assert ClientReport(0, 0, 1.0, 1, completed=False).outcome == "straggled"


def test_first_try_that_fails_explores_the_client_with_the_round_mean_utility() -> None:
    # Prepare: in round 3, clients 0 and 1 complete (utilities 10 * 1 and 10 * 3);
    # client 2, never seen, straggles at 50 s.
    def completed(cid: int, rms: float) -> ClientReport:
        loss = LossStats(mean_loss=rms, sum_sq_loss=rms**2 * 10, samples_seen=10)
        return ClientReport(cid, 3, 1.0, 10, completed=True, loss=loss)

    reports = [completed(0, 1.0), completed(1, 3.0), ClientReport(2, 3, 50.0, 10, False)]
    # Act
    state = apply_reports(OortState.empty(30.0, 20), reports)
    later = apply_reports(state, [ClientReport(3, 4, 60.0, 10, completed=False)])
    # Assert: client 2 gets the round's mean utility (20) and round 3 (as in Oort's
    # reference code), so it no longer takes an exploration slot; with nobody
    # completing, client 3 gets the mean of every known utility (20 as well).
    np.testing.assert_allclose(state.utility, [10.0, 30.0, 20.0])
    np.testing.assert_array_equal(state.last_round, [3, 3, 3])
    assert state.explored.all()
    np.testing.assert_allclose(later.utility[3], 20.0)
    np.testing.assert_array_equal(later.window_count, state.window_count)
    unknown = apply_reports(OortState.empty(30.0, 20), [ClientReport(0, 0, 2.0, 10, False)])
    np.testing.assert_allclose(unknown.utility, [0.0])


def test_priors_feed_sizes_and_expected_durations_measured_values_win() -> None:
    selector = OortSelector()
    loss = LossStats(mean_loss=1.0, sum_sq_loss=10.0, samples_seen=10)
    state = selector.feedback(
        selector.init_state(), [ClientReport(1, 0, 7.0, 10, completed=True, loss=loss)]
    )
    # Act
    state = selector.with_priors(state, np.array([100.0, 200.0, np.nan]), np.array([1.0, 2.0]))
    # Assert
    np.testing.assert_allclose(state.num_samples, [100.0, 10.0, np.nan])
    np.testing.assert_allclose(state.known_duration_s(), [1.0, 7.0, np.nan])


def test_pacer_window_counts_only_exploited_clients_of_that_round() -> None:
    # Prepare: exploit-only selector; round 0 can only explore.
    selector = OortSelector(exploration_factor=0.0, exploration_min=0.0, pacer_step=2)
    loss = LossStats(mean_loss=1.0, sum_sq_loss=4.0, samples_seen=1)  # rms 2
    state = selector.init_state()
    picked, state = selector.select(state, 0, np.arange(2), 2, 0.0)
    state = selector.feedback(state, [ClientReport(c, 0, 1.0, 5, True, loss) for c in picked])
    # Act
    picked, state = selector.select(state, 1, np.arange(2), 2, 0.0)
    stale = ClientReport(0, 0, 1.0, 5, True, loss)  # a late report of round 0
    state = selector.feedback(state, [ClientReport(c, 1, 1.0, 5, True, loss) for c in picked])
    state = selector.feedback(state, [stale])
    # Assert: slot 0 (round 0) saw explorers only; slot 1 has 2 exploited clients, 10 each.
    np.testing.assert_array_equal(state.window_round, [0, 1, -1, -1])
    np.testing.assert_array_equal(state.window_count, [0, 2, 0, 0])
    np.testing.assert_allclose(state.window_util_sum, [0.0, 20.0, 0.0, 0.0])


def test_state_round_trips_through_json_and_selects_identically() -> None:
    # Prepare: a state with priors, reports, picks and a pacer window.
    selector = OortSelector(pacer_step=2, blacklist_rounds=3)
    state = selector.with_priors(selector.init_state(), np.arange(1.0, 41.0), np.ones(40))
    for round_idx in range(6):
        picked, state = selector.select(state, round_idx, np.arange(40), 5, 0.0)
        loss = LossStats(mean_loss=1.0, sum_sq_loss=float(round_idx + 1), samples_seen=1)
        state = selector.feedback(
            state, [ClientReport(c, round_idx, 1.0 + c, 3, c % 2 == 0, loss) for c in picked]
        )
    # Act
    restored = OortState.from_dict(json.loads(json.dumps(state.to_dict(), allow_nan=False)))
    # Assert
    for name in ("num_samples", "duration_s", "utility", "times_picked", "window_util_sum"):
        np.testing.assert_array_equal(getattr(restored, name), getattr(state, name))
    assert restored.round_threshold == state.round_threshold
    assert (
        selector.select(restored, 6, np.arange(40), 5, 0.0)[0]
        == selector.select(state, 6, np.arange(40), 5, 0.0)[0]
    )


def test_state_arrays_are_read_only_and_bad_checkpoints_are_rejected() -> None:
    state = OortState.empty(30.0, 2).resized(3)
    with pytest.raises(ValueError):
        state.utility[0] = 1.0
    data = state.to_dict()
    with pytest.raises(ValueError, match="version"):
        OortState.from_dict({**data, "version": 2})
    with pytest.raises(ValueError, match="mismatch"):
        OortState.from_dict({**data, "extra": 1})
    with pytest.raises(ValueError, match="length"):
        OortState.from_dict({**data, "utility": [None]})


def test_negative_client_ids_are_rejected() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        apply_reports(OortState.empty(30.0, 2), [ClientReport(-1, 0, 1.0, 1, False)])
    with pytest.raises(ValueError, match=">= 0"):
        OortSelector().select(OortSelector().init_state(), 0, np.array([-1, 2]), 1, 0.0)
    assert math.isinf(OortSelector().preferred_duration_s(OortState.empty(30.0, 2)))


def test_feed_priors_tells_only_the_candidates_and_keeps_what_was_known() -> None:
    selector = OortSelector()
    state = feed_priors(
        selector, selector.init_state(), np.array([0, 2]), np.array([10, 30]), np.array([1.0, 3.0])
    )
    # Act: client 2 is offline now, client 1 shows up.
    state = feed_priors(selector, state, np.array([1]), np.array([20]), np.array([2.0]))
    # Assert
    np.testing.assert_allclose(state.num_samples, [10.0, 20.0, 30.0])
    np.testing.assert_allclose(state.known_duration_s(), [1.0, 2.0, 3.0])
    assert feed_priors(object(), "same", np.array([1]), np.ones(1), np.ones(1)) == "same"

"""Oort's state summary: the round's explored and exploited clients, utilities, pacer."""

from __future__ import annotations

import numpy as np

from fedsys.core.update import ClientReport, LossStats
from fedsys.selection.describe import UTILITY_BINS, describe_selector
from fedsys.selection.oort import OortSelector
from fedsys.selection.random import RandomSelector


def _reports(clients: list[int], round_idx: int) -> list[ClientReport]:
    return [
        ClientReport(
            client_id=c,
            round_idx=round_idx,
            duration_s=10.0 + c,
            num_samples=20,
            completed=True,
            loss=LossStats(mean_loss=1.0, sum_sq_loss=float(c + 1) * 20, samples_seen=20),
            samples_processed=20,
        )
        for c in clients
    ]


def test_oort_summary_counts_explored_and_exploited_picks() -> None:
    selector = OortSelector(seed=0, exploration_factor=0.5, exploration_min=0.5)
    state = selector.init_state()
    available = np.arange(20)
    first, state = selector.select(state, 0, available, 6, 0.0)
    state = selector.feedback(state, _reports(first, 0))
    second, state = selector.select(state, 1, available, 6, 100.0)

    summary = describe_selector(selector, state, 1, second)

    assert summary is not None
    assert summary["explored"] + summary["exploited"] == 6
    assert summary["exploited"] == len(set(second) & set(first))
    assert summary["known_clients"] == 6
    assert summary["blacklist"] == 0
    assert summary["preferred_s"] is not None
    hist = summary["utility_hist"]
    assert len(hist["counts"]) == UTILITY_BINS and sum(hist["counts"]) == 6


def test_a_selector_with_nothing_to_show_is_described_as_none() -> None:
    selector = RandomSelector(seed=0)
    assert describe_selector(selector, selector.init_state(), 0, [1, 2]) is None

"""Oort's training selector: useful data now, from clients who finish fast.

Our own implementation of the participant selection of Lai et al., "Oort: Efficient
Federated Learning via Guided Participant Selection", OSDI 2021,
https://www.usenix.org/conference/osdi21/presentation/lai (reference code read for
behaviour only: github.com/SymbioticLab/Oort). Unlike FedScale's copy, a client's
statistical utility uses the loss of *every* sample it trained on, not the last batch.

Where it departs from the reference code, and why (see
:func:`fedsys.selection.oort_state.apply_reports`):

* stragglers are treated as the reference treats ``round_stragglers``: the round's
  mean utility and a fresh timestamp;
* clients that went offline mid-round (``outcome="dropped"``) teach nothing: the
  reference has no such case (FedScale offers only clients online at selection), and
  a dropout's duration and loss are unknown, not slow or low;
* clients whose update validation refused (``outcome="rejected"``) get utility 0:
  the reference does not validate updates, and a refused update must never earn a
  reward.

How a runtime drives it::

    selector = OortSelector(seed=run_seed)
    state = selector.init_state()
    state = selector.with_priors(state, num_samples, expected_duration_s)  # optional
    for round_idx in range(rounds):
        picked, state = selector.select(state, round_idx, available_ids, k, now_s)
        ...  # train; every picked client reports, stragglers and dropouts too
        state = selector.feedback(state, reports)  # ClientReport(round_idx=round_idx, ...)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from fedsys.core.update import ClientId, ClientReport
from fedsys.selection.base import Proposal, Selector
from fedsys.selection.oort_state import OortState, apply_reports
from fedsys.selection.sampling import (
    as_client_ids,
    fill_random,
    fill_unknown,
    nearest_rank,
    weighted_sample,
)


class OortSelector(Selector[OortState]):
    """Guided participant selection: exploit high-utility fast clients, explore the rest.

    Parameters
    ----------
    exploration_factor, exploration_decay, exploration_min
        Fraction of each round given to unexplored clients: ``max(factor *
        decay**round_idx, min)``. When too few unexplored clients are available the
        slots go to exploitation, and the other way round.
    staleness_coef
        ``c`` of the confidence term ``sqrt(c * ln(r) / last_round_i)`` (1-based rounds).
    clip_bound
        Utilities are clipped at this (nearest-rank) quantile of the candidates' utilities before
        min-max normalisation, so one outlier cannot flatten everyone else.
    round_threshold
        Initial percentile (0..100) of known client durations used as the preferred
        round duration ``T``; 100 disables the system penalty.
    round_penalty
        ``alpha``: a client slower than ``T`` has its score times ``(T / t_i)**alpha``.
    pacer_step, pacer_delta, pacer_tolerance
        Every ``pacer_step`` rounds (from round ``2 * pacer_step``) the summed exploited
        utility of the last window is compared with the window before; a relative
        change of at most ``pacer_tolerance`` raises ``round_threshold`` by
        ``pacer_delta`` (capped at 100). A window sums, per round, the mean utility of
        the exploited clients that completed (as Oort's reference code does).
    cut_off_util, exploit_pool
        Exploitation samples ``n`` clients proportionally to score among the
        explored clients scoring at least ``cut_off_util`` times the ``n``-th best
        score, widened to the ``ceil(exploit_pool * n)`` best when fewer (Oort's
        reference code widens to ten times ``n``, so exploitation keeps rotating
        among many good clients instead of replaying the same top ``n``).
    sample_window
        Exploration samples among the ``sample_window * n`` best unexplored clients
        (by sample count, penalised when expected slower than ``T``).
    blacklist_rounds
        Clients picked more than this many times are left out; ``None`` disables.
    blacklist_max_len
        The blacklist never holds more than this fraction of known clients (the most
        picked first); blacklisted clients still fill a round that would otherwise be
        short.
    seed
        Base seed; each round draws from ``np.random.default_rng([seed, round_idx])``.
    """

    def __init__(
        self,
        exploration_factor: float = 0.9,
        exploration_decay: float = 0.98,
        exploration_min: float = 0.3,
        staleness_coef: float = 0.1,
        clip_bound: float = 0.95,
        round_threshold: float = 30.0,
        round_penalty: float = 2.0,
        pacer_step: int = 20,
        pacer_delta: float = 5.0,
        pacer_tolerance: float = 0.1,
        cut_off_util: float = 0.95,
        exploit_pool: float = 10.0,
        sample_window: float = 5.0,
        blacklist_rounds: int | None = None,
        blacklist_max_len: float = 0.3,
        seed: int = 0,
    ) -> None:
        self.exploration_factor = exploration_factor
        self.exploration_decay = exploration_decay
        self.exploration_min = exploration_min
        self.staleness_coef = staleness_coef
        self.clip_bound = clip_bound
        self.round_threshold = round_threshold
        self.round_penalty = round_penalty
        self.pacer_step = pacer_step
        self.pacer_delta = pacer_delta
        self.pacer_tolerance = pacer_tolerance
        self.cut_off_util = cut_off_util
        self.exploit_pool = exploit_pool
        self.sample_window = sample_window
        self.blacklist_rounds = blacklist_rounds
        self.blacklist_max_len = blacklist_max_len
        self.seed = seed

    def init_state(self) -> OortState:
        """State knowing no client; arrays grow as ids appear in ``select``/``feedback``."""
        return OortState.empty(self.round_threshold, self.pacer_step)

    def with_priors(
        self,
        state: OortState,
        num_samples: np.ndarray,
        expected_duration_s: np.ndarray | None = None,
    ) -> OortState:
        """Seed what is known of clients ``0..len(num_samples)-1`` before they train.

        Parameters
        ----------
        state
            Current state; a client's reported sample count is kept over the prior.
        num_samples
            Training samples per client id (NaN when unknown): an unexplored client's
            utility.
        expected_duration_s
            Expected round duration per client id (NaN: unknown, an earlier prior is
            kept); used until the client reports a measured duration.

        Returns
        -------
        OortState
            New state covering at least ``len(num_samples)`` clients.
        """
        sizes = np.asarray(num_samples, dtype=np.float64)
        hints = None if expected_duration_s is None else np.asarray(expected_duration_s, float)
        state = state.resized(max(len(sizes), 0 if hints is None else len(hints)))
        counts = state.num_samples.copy()
        keep = state.explored[: len(sizes)] | ~np.isfinite(sizes)
        counts[: len(sizes)] = np.where(keep, counts[: len(sizes)], sizes)
        prior = state.prior_duration_s
        if hints is not None:
            prior = prior.copy()
            given = np.isfinite(hints)
            prior[: len(hints)][given] = hints[given]
        return replace(state, num_samples=counts, prior_duration_s=prior)

    def exploration(self, round_idx: int) -> float:
        """Fraction of slots meant for unexplored clients at ``round_idx``."""
        decayed = self.exploration_factor * self.exploration_decay**round_idx
        return max(decayed, self.exploration_min)

    def preferred_duration_s(self, state: OortState) -> float:
        """``T``: the nearest-rank percentile ``state.round_threshold`` of known durations."""
        known = state.known_duration_s()
        known = known[np.isfinite(known)]
        if state.round_threshold >= 100.0 or len(known) == 0:
            return math.inf
        return nearest_rank(known, state.round_threshold / 100.0)

    def blacklist(self, state: OortState) -> np.ndarray:
        """Ids of clients picked more than ``blacklist_rounds`` times (capped)."""
        if self.blacklist_rounds is None:
            return np.empty(0, dtype=np.int64)
        over = np.flatnonzero(state.times_picked > self.blacklist_rounds)
        cap = int(self.blacklist_max_len * state.num_clients)
        if len(over) > cap:
            order = np.argsort(-state.times_picked[over], kind="stable")
            over = over[order[:cap]]
        return over

    def scores(
        self, state: OortState, round_idx: int, clients: np.ndarray, preferred_s: float
    ) -> np.ndarray:
        """Exploitation scores of explored ``clients`` (one per id, same order).

        ``clip(utility) -> min-max -> + sqrt(c ln r / last_r) -> * (T/t)**alpha if t > T``,
        with clipping and normalisation over ``clients`` and 1-based rounds.
        """
        utility = state.utility[clients]
        if len(utility) == 0:
            return np.empty(0)
        clip = nearest_rank(utility, self.clip_bound)
        clipped = np.minimum(utility, clip)
        low = float(clipped.min())
        span = clip - low
        score = (clipped - low) / span if span > 0 else np.zeros_like(clipped)
        last = np.maximum(state.last_round[clients], 0) + 1
        score = score + np.sqrt(self.staleness_coef * math.log(round_idx + 1) / last)
        penalised: np.ndarray = score * self._speed_factor(
            state.known_duration_s(clients), preferred_s
        )
        return penalised

    def select(
        self,
        state: OortState,
        round_idx: int,
        available: np.ndarray,
        k: int,
        now_s: float,
    ) -> tuple[list[ClientId], OortState]:
        """Pick ``min(k, len(available))`` distinct clients (see the class docstring)."""
        proposal = self.propose(state, round_idx, available, k, now_s)
        return proposal.candidates, proposal.commit(proposal.candidates)

    def propose(
        self,
        state: OortState,
        round_idx: int,
        available: np.ndarray,
        k: int,
        now_s: float,
    ) -> Proposal[OortState]:
        """:meth:`select`'s picks; committing a subset counts only that subset as picked."""
        ids = as_client_ids(available)
        take = min(int(k), len(ids))
        if take <= 0:
            return Proposal([], lambda kept: state)
        state = self._pace(state.resized(int(ids[-1]) + 1), round_idx)
        rng = np.random.default_rng([self.seed, round_idx])
        banned = np.zeros(state.num_clients, dtype=bool)
        banned[self.blacklist(state)] = True
        allowed = ids[~banned[ids]]
        known = state.explored[allowed]
        explored, unexplored = allowed[known], allowed[~known]
        n_exploit, n_explore = self._split(take, round_idx, len(explored), len(unexplored))
        preferred_s = self.preferred_duration_s(state)
        exploit = self._exploit(rng, state, round_idx, explored, n_exploit, preferred_s)
        explore = self._explore(rng, state, unexplored, n_explore, preferred_s)
        chosen = np.concatenate([exploit, explore])
        chosen = np.concatenate([chosen, fill_random(rng, allowed, chosen, take - len(chosen))])
        chosen = np.concatenate([chosen, fill_random(rng, ids, chosen, take - len(chosen))])

        def commit(kept: Sequence[ClientId]) -> OortState:
            kept_ids = np.asarray(kept, dtype=np.int64)
            return self._record(state, round_idx, kept_ids, exploit[np.isin(exploit, kept_ids)])

        return Proposal([int(c) for c in chosen], commit)

    def feedback(self, state: OortState, reports: Sequence[ClientReport]) -> OortState:
        """Fold one round's reports (every outcome, see :func:`apply_reports`) into the state."""
        return apply_reports(state, reports)

    def _split(
        self, take: int, round_idx: int, n_explored: int, n_unexplored: int
    ) -> tuple[int, int]:
        """Slots for exploitation and exploration; a side short of clients lends to the other."""
        wanted = math.floor(take * (1.0 - self.exploration(round_idx)) + 1e-9)
        n_exploit = min(wanted, n_explored)
        n_explore = min(n_unexplored, take - n_exploit)
        return min(n_explored, take - n_explore), n_explore

    def _speed_factor(self, duration_s: np.ndarray, preferred_s: float) -> np.ndarray:
        """``(T / t)**alpha`` for clients slower than ``T``, 1 otherwise (and when unknown)."""
        slow = duration_s > preferred_s
        ratio = np.divide(preferred_s, duration_s, out=np.ones_like(duration_s), where=slow)
        return np.where(slow, ratio**self.round_penalty, 1.0)

    def _exploit(
        self,
        rng: np.random.Generator,
        state: OortState,
        round_idx: int,
        explored: np.ndarray,
        n: int,
        preferred_s: float,
    ) -> np.ndarray:
        """Sample ``n`` among the best-scored clients, proportionally to score."""
        if n <= 0:
            return np.empty(0, dtype=np.int64)
        score = self.scores(state, round_idx, explored, preferred_s)
        kth = float(-np.partition(-score, n - 1)[n - 1])
        above = int(np.count_nonzero(score >= kth * self.cut_off_util))
        size = min(len(score), max(above, math.ceil(self.exploit_pool * n - 1e-9)))
        if size < len(score):
            pool = np.argpartition(-score, size - 1)[:size]
        else:
            pool = np.arange(len(score))
        return weighted_sample(rng, explored[pool], score[pool], n)

    def _explore(
        self,
        rng: np.random.Generator,
        state: OortState,
        unexplored: np.ndarray,
        n: int,
        preferred_s: float,
    ) -> np.ndarray:
        """Sample ``n`` unexplored clients, favouring more data and expected speed."""
        if n <= 0:
            return np.empty(0, dtype=np.int64)
        weight = fill_unknown(state.num_samples[unexplored])
        weight = weight * self._speed_factor(state.known_duration_s(unexplored), preferred_s)
        window = min(len(unexplored), max(n, math.ceil(self.sample_window * n)))
        if window < len(unexplored):
            top = np.argpartition(-weight, window - 1)[:window]
            unexplored, weight = unexplored[np.sort(top)], weight[np.sort(top)]
        return weighted_sample(rng, unexplored, weight, n)

    def _pace(self, state: OortState, round_idx: int) -> OortState:
        """Relax the round-duration percentile when exploited utility has plateaued."""
        step = self.pacer_step
        if len(state.window_round) != 2 * step:
            raise ValueError(
                f"state has a pacer window of {len(state.window_round)} slots, "
                f"expected 2 * pacer_step = {2 * step}"
            )
        due = round_idx >= 2 * step and round_idx % step == 0
        if not due or state.pacer_checked_round == round_idx:
            return state
        before = self._window_total(state, round_idx - 2 * step)
        latest = self._window_total(state, round_idx - step)
        threshold = state.round_threshold
        if abs(latest - before) <= self.pacer_tolerance * before:
            threshold = min(100.0, threshold + self.pacer_delta)
        return replace(state, round_threshold=threshold, pacer_checked_round=round_idx)

    def _window_total(self, state: OortState, first_round: int) -> float:
        """Sum over ``pacer_step`` rounds from ``first_round`` of the mean exploited utility."""
        rounds = np.arange(first_round, first_round + self.pacer_step)
        slots = rounds % len(state.window_round)
        counts = state.window_count[slots]
        live = (state.window_round[slots] == rounds) & (counts > 0)
        sums = state.window_util_sum[slots]
        means = np.divide(sums, counts, out=np.zeros(len(rounds)), where=live)
        return float(means.sum())

    def _record(
        self, state: OortState, round_idx: int, chosen: np.ndarray, exploit: np.ndarray
    ) -> OortState:
        """Count the picks, mark exploited clients and open the round's pacer slot."""
        picked = state.times_picked.copy()
        picked[chosen] += 1
        exploited = state.exploited_round.copy()
        exploited[exploit] = round_idx
        slot = round_idx % len(state.window_round)
        if state.window_round[slot] == round_idx:
            return replace(state, times_picked=picked, exploited_round=exploited)
        window_round = state.window_round.copy()
        window_round[slot] = round_idx
        window_sum = state.window_util_sum.copy()
        window_sum[slot] = 0.0
        window_count = state.window_count.copy()
        window_count[slot] = 0
        return replace(
            state,
            times_picked=picked,
            exploited_round=exploited,
            window_round=window_round,
            window_util_sum=window_sum,
            window_count=window_count,
        )

"""DP-FedAvg: client-level differential privacy (McMahan et al., ICLR 2018).

"Learning Differentially Private Recurrent Language Models",
https://arxiv.org/abs/1710.06963: clip each client's delta to L2 norm ``C``, sum,
add Gaussian noise of standard deviation ``z C`` to the sum, and divide by the
*expected* number of clients per round (the fixed-denominator estimator, whose
sensitivity does not depend on how many clients actually reported).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch

from fedsys.aggregation.base import Strategy
from fedsys.aggregation.privacy import PrivacyAccountant, PrivacyBudgetExceededError
from fedsys.aggregation.tensor_ops import clip_factor
from fedsys.core.update import ClientUpdate
from fedsys.core.weights import ModelWeights

_LOGGER = logging.getLogger(__name__)

BudgetAction = Literal["stop", "warn"]


@dataclass(frozen=True)
class DPFedAvgState:
    """Privacy spent so far.

    Parameters
    ----------
    rounds
        Rounds aggregated (each one a release of the noisy sum).
    epsilon
        Epsilon spent after ``rounds`` rounds at the strategy's ``target_delta``.
    draws
        The privacy ledger: ``(population, sampled)`` of every released round's draw.
    pending_draw
        The draw of the round being formed, noted by the runtime
        (:meth:`DPFedAvg.with_draw`); ``None``: the accountant's own sizes.
    client_releases
        Asynchronous rounds only: how many released aggregations each client's update
        was in (``None``: rounds are sampled draws, accounted by ``draws``).
    pending_clients
        The clients of the aggregation being formed, noted by an asynchronous runtime
        (:meth:`DPFedAvg.with_clients`).
    """

    rounds: int = 0
    epsilon: float = 0.0
    draws: tuple[tuple[int, int], ...] = ()
    pending_draw: tuple[int, int] | None = None
    client_releases: dict[int, int] | None = None
    pending_clients: tuple[int, ...] | None = None

    def releases_after(self, clients: tuple[int, ...]) -> dict[int, int]:
        """:attr:`client_releases` once an aggregation of ``clients`` is released."""
        counts = dict(self.client_releases or {})
        for client in set(clients):  # a client is in an aggregation once at most
            counts[client] = counts.get(client, 0) + 1
        return counts


def gaussian_noise(num_params: int, std: float, seed: int, round_idx: int) -> torch.Tensor:
    """Float32 noise ``N(0, std²)`` drawn from the stream ``[seed, round_idx]``."""
    rng = np.random.default_rng([seed, round_idx])
    noise = rng.standard_normal(num_params, dtype=np.float32)
    return torch.from_numpy(noise).mul_(std)


class DPFedAvg(Strategy[DPFedAvgState]):
    """FedAvg with per-client clipping and Gaussian noise, plus privacy accounting.

    Each round: ``w ← w + server_lr · (Σ_k clip(delta_k, C) + N(0, (z C)²)) / n``, with
    ``n = accountant.clients_per_round`` and ``z = accountant.noise_multiplier``. The
    epsilon the run will have spent is computed before the round; above
    ``epsilon_budget`` the round either raises :class:`PrivacyBudgetExceededError` without
    touching the model (``"stop"``) or runs and warns (``"warn"``). The state reports
    the epsilon spent after every round. Streams its input; updates are weighted
    uniformly (sample counts would change the sensitivity).

    The guarantee holds only if the runtime samples clients as the accountant assumes
    (Poisson at ``q = clients_per_round / population_size``, or fixed-size without
    replacement) and applies no other selection. A runtime that knows each round's
    draw notes it with :meth:`with_draw` before aggregating; the round is then
    accounted by that draw (see :meth:`PrivacyAccountant.epsilon_of_draws`). A round
    in which nobody took part still releases noise (``releases_empty_rounds``), as
    Poisson sampling requires.

    Parameters
    ----------
    clip_norm
        ``C``, the L2 bound on each client's delta (> 0).
    accountant
        Noise multiplier, sampling and population; see :class:`PrivacyAccountant`.
    target_delta
        ``δ`` at which epsilon is reported (in (0, 1); below ``1 / population_size``).
    epsilon_budget
        Largest epsilon allowed, or ``None`` for no budget.
    on_budget_exceeded
        ``"stop"`` or ``"warn"``.
    server_lr
        Step size applied to the noisy mean.
    seed
        Seed of the noise; round ``r`` draws from the stream ``[seed, r]``.
    """

    def __init__(
        self,
        clip_norm: float,
        accountant: PrivacyAccountant,
        target_delta: float = 1e-5,
        epsilon_budget: float | None = None,
        on_budget_exceeded: BudgetAction = "stop",
        server_lr: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.clip_norm = clip_norm
        self.accountant = accountant
        self.target_delta = target_delta
        self.epsilon_budget = epsilon_budget
        self.on_budget_exceeded = on_budget_exceeded
        self.server_lr = server_lr
        self.seed = seed

    releases_empty_rounds = True
    """Aggregate (noise only) even when no client update arrived."""

    def init_state(self, weights: ModelWeights) -> DPFedAvgState:
        """No round run, nothing spent."""
        return DPFedAvgState()

    def with_draw(self, state: DPFedAvgState, population: int, sampled: int) -> DPFedAvgState:
        """Note how the next round's clients were drawn: ``sampled`` of ``population``."""
        return replace(state, pending_draw=(int(population), int(sampled)))

    def with_clients(self, state: DPFedAvgState, clients: Iterable[int]) -> DPFedAvgState:
        """Note the clients of the next aggregation of an asynchronous runtime.

        From then on the run is accounted per client (see
        :meth:`PrivacyAccountant.epsilon_of_participations`): asynchronous buffers are
        not fresh samples, so no sampling amplification is claimed.
        """
        return replace(state, pending_clients=tuple(int(c) for c in clients))

    def privacy_report(self, state: DPFedAvgState) -> dict[str, object]:
        """What the epsilon assumes and covers, for the run summary."""
        accountant = self.accountant
        if state.client_releases is not None:
            most = max(state.client_releases.values(), default=0)
            return {
                **self._report_base(state),
                "sampling": "async_per_client",
                "assumption": (
                    "asynchronous buffered rounds: who is in an aggregation depends on "
                    "earlier draws and on device speed, not on a fresh sample, so no "
                    "sampling amplification is relied on: given the participation schedule "
                    "(set by the seed, the traces and sample counts, never by the data), "
                    "each client's aggregations compose as Gaussian releases (replace-one "
                    f"neighbours, noise z/2); epsilon is the client in the most aggregations "
                    f"({most}), or, if larger, every aggregation priced as a draw of all the "
                    "clients its refills drew"
                ),
                "q": max((m / n for n, m in state.draws if n > 0), default=1.0),
                "max_client_releases": most,
            }
        if accountant.sampling == "poisson":
            q: float = accountant.sampling_probability
            assumption = (
                "Poisson: each available client joins each round independently with "
                f"probability q = {accountant.clients_per_round}/{accountant.population_size}"
            )
        else:
            fractions = [m / n for n, m in state.draws if n > 0] or [
                accountant.sampling_probability
            ]
            q = max(fractions)
            assumption = (
                "fixed-size sampling without replacement among the clients online at each "
                "draw (replace-one neighbours), each round accounted by its own draw; q is "
                "the worst round's sampled/online"
            )
        return {
            **self._report_base(state),
            "sampling": accountant.sampling,
            "assumption": assumption,
            "q": q,
        }

    def _report_base(self, state: DPFedAvgState) -> dict[str, object]:
        accountant = self.accountant
        return {
            "noise_multiplier": accountant.noise_multiplier,
            "clip_norm": self.clip_norm,
            "population_size": accountant.population_size,
            "clients_per_round": accountant.clients_per_round,
            "rounds": state.rounds,
            "epsilon": state.epsilon,
            "delta": self.target_delta,
        }

    @property
    def noise_std(self) -> float:
        """Standard deviation of the noise added to the clipped sum: ``z C``."""
        return self.accountant.noise_multiplier * self.clip_norm

    def check_budget(
        self,
        rounds: int,
        draws: tuple[tuple[int, int], ...] | None = None,
        client_releases: dict[int, int] | None = None,
    ) -> float:
        """Epsilon after ``rounds`` rounds; raise or warn if it exceeds the budget.

        Parameters
        ----------
        rounds
            Rounds released, this one included.
        draws
            Their ``(population, sampled)`` draws, when known (one per round).
        client_releases
            Asynchronous rounds: releases each client was in, this one included; the
            epsilon is then the most-released client's (no sampling amplification), or
            that of ``draws`` if larger.

        Raises
        ------
        PrivacyBudgetExceededError
            If over budget and ``on_budget_exceeded == "stop"``.
        """
        if client_releases is not None:
            most = max(client_releases.values(), default=0)
            epsilon = self.accountant.epsilon_of_participations(most, self.target_delta)
            if draws:  # never below the aggregations priced as (union-bounded) draws
                sampled = self.accountant.epsilon_of_draws(draws, self.target_delta)
                epsilon = max(epsilon, sampled)
        elif draws is None:
            epsilon = self.accountant.epsilon(rounds, self.target_delta)
        else:
            epsilon = self.accountant.epsilon_of_draws(draws, self.target_delta)
        budget = self.epsilon_budget
        if budget is not None and epsilon > budget:
            error = PrivacyBudgetExceededError(epsilon, budget, rounds)
            if self.on_budget_exceeded == "stop":
                raise error
            warnings.warn(str(error), RuntimeWarning, stacklevel=3)
        return epsilon

    def aggregate(
        self, weights: ModelWeights, updates: Iterable[ClientUpdate], state: DPFedAvgState
    ) -> tuple[ModelWeights, DPFedAvgState]:
        """Clip, sum, add noise, divide by the expected count; account for the round.

        With no update at all the round releases noise only (a Poisson round may
        sample nobody).

        Raises
        ------
        PrivacyBudgetExceededError
            Before any aggregation, if this round would exceed a ``"stop"`` budget.
        """
        rounds = state.rounds + 1
        accountant = self.accountant
        draw = state.pending_draw or (accountant.population_size, accountant.clients_per_round)
        draws = (*state.draws, draw)
        releases = state.client_releases
        if state.pending_clients is not None:
            releases = state.releases_after(state.pending_clients)
        epsilon = self.check_budget(rounds, draws, releases)
        total = torch.zeros_like(weights.flat)
        for update in updates:
            weights.check_same_layout(update.delta)
            factor = clip_factor(update.delta.norm(), self.clip_norm)
            total.add_(update.delta.flat, alpha=factor)
        total.add_(gaussian_noise(weights.num_params, self.noise_std, self.seed, state.rounds))
        step = self.server_lr / self.accountant.clients_per_round
        _LOGGER.info(
            "DP-FedAvg round %d: epsilon=%.4g at delta=%g", rounds, epsilon, self.target_delta
        )
        new_state = DPFedAvgState(rounds, epsilon, draws, client_releases=releases)
        return weights.with_flat(weights.flat + step * total), new_state

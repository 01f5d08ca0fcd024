"""Privacy accounting for client-level DP with the ``dp-accounting`` library's RDP accountant.

One round of DP-FedAvg is a sampled Gaussian mechanism over *clients*: each round samples
clients (Poisson with probability ``q = clients_per_round / population_size``, or a
fixed-size subset without replacement), clips each update to norm ``C`` and adds
``N(0, (z C)²)`` noise to the sum. Rounds compose.

A runtime whose fixed-size draws differ from round to round (the simulator draws
``ceil(overcommit × K)`` among the clients online *now*) accounts each round by its own
draw: :meth:`PrivacyAccountant.epsilon_of_draws`.

``dp_accounting`` is imported where it is used: it loads most of SciPy (about 0.9 s),
which every ``fedsys`` command would otherwise pay, private or not.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import dp_accounting
    from dp_accounting.rdp import RdpAccountant

Sampling = Literal["poisson", "fixed_size"]


class PrivacyBudgetExceededError(RuntimeError):
    """Running one more round would spend more than the configured epsilon budget.

    Parameters
    ----------
    epsilon
        Epsilon the run would have spent after ``rounds`` rounds.
    budget
        The configured budget.
    rounds
        The round count that would exceed it.
    """

    def __init__(self, epsilon: float, budget: float, rounds: int) -> None:
        super().__init__(
            f"privacy budget exceeded: {rounds} rounds spend epsilon={epsilon:.4g} "
            f"> budget {budget:.4g}"
        )
        self.epsilon = epsilon
        self.budget = budget
        self.rounds = rounds


@dataclass(frozen=True)
class PrivacyAccountant:
    """(ε, δ) spent by DP-FedAvg after a number of rounds, from an RDP accountant.

    With ``sampling="poisson"`` the neighbouring relation is add-or-remove one client
    and the Gaussian's noise multiplier is ``z``. With ``"fixed_size"`` (sampling
    without replacement, Wang, Balle and Kasiviswanathan 2019) the relation is
    replace-one client, under which the clipped sum moves by up to ``2C``: the noise
    multiplier given to the accountant is then ``z / 2``.

    Parameters
    ----------
    noise_multiplier
        ``z``: noise standard deviation over the clip norm (>= 0; 0 means no privacy).
    clients_per_round
        Expected (Poisson) or exact (fixed size) number of clients sampled per round.
    population_size
        Number of clients sampled from.
    sampling
        ``"poisson"`` or ``"fixed_size"``.

    Raises
    ------
    ValueError
        On a negative multiplier, or a sample larger than the population.
    """

    noise_multiplier: float
    clients_per_round: int
    population_size: int
    sampling: Sampling = "poisson"

    def __post_init__(self) -> None:
        if self.noise_multiplier < 0:
            raise ValueError(f"noise_multiplier must be >= 0, got {self.noise_multiplier}")
        if not 1 <= self.clients_per_round <= self.population_size:
            raise ValueError(
                f"clients_per_round must be in [1, population_size={self.population_size}], "
                f"got {self.clients_per_round}"
            )
        if self.sampling not in ("poisson", "fixed_size"):
            raise ValueError(f"sampling must be 'poisson' or 'fixed_size', got {self.sampling!r}")

    @property
    def sampling_probability(self) -> float:
        """Probability that a given client takes part in a round."""
        return self.clients_per_round / self.population_size

    def round_event(self) -> dp_accounting.DpEvent:
        """The ``dp_accounting`` event of one round."""
        import dp_accounting

        if self.sampling == "poisson":
            gaussian = dp_accounting.GaussianDpEvent(self.noise_multiplier)
            return dp_accounting.PoissonSampledDpEvent(self.sampling_probability, gaussian)
        gaussian = dp_accounting.GaussianDpEvent(self.noise_multiplier / 2)
        return dp_accounting.SampledWithoutReplacementDpEvent(
            self.population_size, self.clients_per_round, gaussian
        )

    def new_rdp_accountant(self) -> RdpAccountant:
        """An empty RDP accountant with the neighbouring relation of this sampling."""
        import dp_accounting
        from dp_accounting.rdp import RdpAccountant

        relation = dp_accounting.NeighboringRelation
        if self.sampling == "poisson":
            return RdpAccountant(neighboring_relation=relation.ADD_OR_REMOVE_ONE)
        return RdpAccountant(neighboring_relation=relation.REPLACE_ONE)

    def epsilon(self, rounds: int, delta: float) -> float:
        """Epsilon spent after ``rounds`` rounds at ``delta``.

        Equal to ``new_rdp_accountant().compose(round_event(), rounds).get_epsilon(delta)``;
        the per-round RDP curve is computed once per setting and scaled by ``rounds``
        (RDP composes additively), so the call costs the same in round 1 and 1000.

        Raises
        ------
        ValueError
            If ``rounds`` is negative or ``delta`` is not in (0, 1).
        """
        if rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {rounds}")
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta}")
        if rounds == 0:
            return 0.0
        orders, rdp = _one_round_rdp(self)
        if rdp is None:
            accountant = self.new_rdp_accountant().compose(self.round_event(), rounds)
            return float(accountant.get_epsilon(delta))
        return _compute_epsilon(orders, rounds * rdp, delta)

    def epsilon_of_draws(self, draws: Sequence[Draw], delta: float) -> float:
        """Epsilon after one round per draw ``(population, sampled)``, at ``delta``.

        ``poisson``: every round is Poisson at :attr:`sampling_probability` (the realised
        sample sizes do not enter; a client offline in a round joins with probability
        0 <= q, which the bound covers). ``fixed_size``: each round is a sample of
        ``sampled`` clients without replacement from its own ``population``, so a round
        drawn from fewer online clients costs more; rounds composing the same draw share
        one RDP curve.

        Raises
        ------
        ValueError
            If ``delta`` is not in (0, 1) or a draw samples more than its population.
        """
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta}")
        for population, sampled in draws:
            if not 0 <= sampled <= population:
                raise ValueError(f"draw of {sampled} clients from {population} is impossible")
        if self.sampling == "poisson":
            return self.epsilon(len(draws), delta)
        return _epsilon_of_draws(self, draws, delta)

    def epsilon_of_participations(self, count: int, delta: float) -> float:
        """Epsilon of a client whose update was in ``count`` releases, with no amplification.

        For asynchronous rounds, where who is in an aggregation is not a fresh sample:
        a client drawn when the pipeline first fills (``max_concurrency`` at once) and
        its place in later buffers depend on its speed and on earlier draws, so no
        per-aggregation sampling probability composes soundly. Conditioned on the
        participation schedule (which the data does not decide), each release a client
        is in is a Gaussian mechanism, and the others cost it nothing. Replace-one
        neighbours (the schedule stays fixed; the clipped sum moves by up to ``2C``):
        ``count`` Gaussian events with noise multiplier ``z / 2``. An upper bound on
        any sampled accounting of the same releases.

        Raises
        ------
        ValueError
            If ``count`` is negative or ``delta`` is not in (0, 1).
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta}")
        if count == 0:
            return 0.0
        if self.noise_multiplier == 0:
            return float("inf")
        return _epsilon_of_gaussians(self.noise_multiplier / 2, count, delta)


Draw = tuple[int, int]
"""One round's sampling: (population sampled from, clients sampled)."""


def _epsilon_of_draws(accountant: PrivacyAccountant, draws: Sequence[Draw], delta: float) -> float:
    """Compose one fixed-size event per distinct draw (RDP adds over rounds)."""
    counts = Counter((int(n), int(m)) for n, m in draws if m > 0)
    if not counts:
        return 0.0
    per_draw = {
        draw: PrivacyAccountant(accountant.noise_multiplier, draw[1], draw[0], "fixed_size")
        for draw in counts
    }
    curves = {draw: _one_round_rdp(one) for draw, one in per_draw.items()}
    if any(rdp is None for _, rdp in curves.values()):
        rdp_accountant = accountant.new_rdp_accountant()
        for draw, count in counts.items():
            rdp_accountant.compose(per_draw[draw].round_event(), count)
        return float(rdp_accountant.get_epsilon(delta))
    orders = next(iter(curves.values()))[0]
    total = sum(count * curves[draw][1] for draw, count in counts.items())
    return _compute_epsilon(orders, total, delta)


@functools.lru_cache(maxsize=1024)
def _epsilon_of_gaussians(noise_multiplier: float, count: int, delta: float) -> float:
    """Epsilon of ``count`` composed Gaussian mechanisms (sensitivity 1, noise ``z``)."""
    import dp_accounting
    from dp_accounting.rdp import RdpAccountant

    accountant = RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    accountant.compose(dp_accounting.GaussianDpEvent(noise_multiplier), count)
    return float(accountant.get_epsilon(delta))


def _compute_epsilon(orders: np.ndarray, rdp: np.ndarray, delta: float) -> float:
    """The library's RDP-to-(epsilon, delta) conversion."""
    from dp_accounting.rdp.rdp_privacy_accountant import compute_epsilon

    return float(compute_epsilon(orders, rdp, delta)[0])


@functools.lru_cache(maxsize=256)
def _one_round_rdp(accountant: PrivacyAccountant) -> tuple[np.ndarray, np.ndarray | None]:
    """RDP orders and values of one round (``None`` values if the library hides them)."""
    rdp = accountant.new_rdp_accountant().compose(accountant.round_event())
    orders = getattr(rdp, "_orders", None)
    values = getattr(rdp, "_rdp", None)
    if orders is None or values is None:
        return np.zeros(0), None
    return np.asarray(orders, dtype=np.float64), np.array(values, dtype=np.float64)

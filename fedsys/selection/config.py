"""Typed configuration of selectors; the name → class registry of this family lives here."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from fedsys.selection.availability import AvailabilityAwareSelector
from fedsys.selection.base import Selector
from fedsys.selection.oort import OortSelector
from fedsys.selection.power_of_choice import PowerOfChoiceSelector
from fedsys.selection.random import RandomSelector


class _SelectorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RandomSelectorConfig(_SelectorSettings):
    """Uniform random selection."""

    name: Literal["random"] = "random"

    def build(self, seed: int) -> Selector:
        """Construct the selector with the run's seed."""
        return RandomSelector(seed=seed)


class OortSelectorConfig(_SelectorSettings):
    """Oort's guided training selection (Lai et al., OSDI 2021); see :class:`OortSelector`."""

    name: Literal["oort"] = "oort"
    exploration_factor: float = Field(
        0.9,
        ge=0,
        le=1,
        description="share of a round given to unexplored clients: "
        "max(factor x decay^round, exploration_min)",
    )
    exploration_decay: float = Field(
        0.98, gt=0, le=1, description="decay of the exploration share per round"
    )
    exploration_min: float = Field(
        0.3, ge=0, le=1, description="the exploration share never falls below this"
    )
    staleness_coef: float = Field(
        0.1, ge=0, description="c of the staleness bonus sqrt(c ln(r) / last_round)"
    )
    clip_bound: float = Field(
        0.95, gt=0, le=1, description="utilities are clipped at this quantile before normalising"
    )
    round_threshold: float = Field(
        30.0,
        ge=0,
        le=100,
        description="initial percentile of known client durations taken as the preferred round "
        "duration T (100: no system penalty)",
    )
    round_penalty: float = Field(
        2.0, ge=0, description="alpha: a client slower than T has its score times (T/t)^alpha"
    )
    pacer_step: int = Field(
        20, ge=1, description="rounds per pacer window (the pacer starts at twice this)"
    )
    pacer_delta: float = Field(
        5.0, ge=0, description="percentile points round_threshold rises by when utility stalls"
    )
    pacer_tolerance: float = Field(
        0.1, ge=0, description="a window's relative utility change up to this counts as a stall"
    )
    cut_off_util: float = Field(
        0.95,
        gt=0,
        le=1,
        description="exploit among explored clients scoring at least this times the n-th best",
    )
    exploit_pool: float = Field(
        10.0,
        ge=1,
        description="exploit among at least this many times the n slots (as the reference code)",
    )
    sample_window: float = Field(
        5.0, ge=1, description="explore among this many times n of the best unexplored clients"
    )
    blacklist_rounds: int | None = Field(
        None,
        ge=0,
        description="clients picked more than this many times are left out (null: never)",
    )
    blacklist_max_len: float = Field(
        0.3, ge=0, le=1, description="largest share of known clients the blacklist holds"
    )

    def build(self, seed: int) -> OortSelector:
        """Construct the selector with the run's seed."""
        return OortSelector(**self.model_dump(exclude={"name"}), seed=seed)


class PowerOfChoiceConfig(_SelectorSettings):
    """Power-of-choice (Cho et al., 2020): of ``ceil(d * k)`` candidates, the ``k`` lossiest."""

    name: Literal["power_of_choice"] = "power_of_choice"
    d: float = Field(
        2.0, ge=1, description="sample ceil(d x K) candidates, keep the K with highest loss"
    )

    def build(self, seed: int) -> PowerOfChoiceSelector:
        """Construct the selector with the run's seed."""
        return PowerOfChoiceSelector(d=self.d, seed=seed)


BaseSelectorConfig = Annotated[
    RandomSelectorConfig | OortSelectorConfig | PowerOfChoiceConfig,
    Field(discriminator="name"),
]
"""A selector that ranks clients by itself (what ``availability`` wraps)."""


class AvailabilitySelectorConfig(_SelectorSettings):
    """REFL-style availability awareness around any selector; see
    :class:`~fedsys.selection.availability.AvailabilityAwareSelector`."""

    name: Literal["availability"] = "availability"
    base: BaseSelectorConfig = Field(
        default_factory=OortSelectorConfig,
        description="the selector that ranks the feasible clients, chosen by name (default oort)",
    )
    margin: float = Field(
        1.0,
        gt=0,
        description="a client is feasible when its predicted remaining online time is at least "
        "margin x its expected round duration",
    )
    pool: float = Field(
        1.5,
        ge=1,
        description="the base offers ceil(pool x K) feasible candidates, of which priority "
        "keeps K (1: feasibility filter only)",
    )
    priority: Literal["soonest", "last_chance"] = Field(
        "soonest",
        description="soonest: the K candidates leaving soonest (REFL's order); last_chance: "
        "candidates predicted to leave before they could finish another round go first, "
        "the base's own picks fill the rest",
    )

    def build(self, seed: int) -> AvailabilityAwareSelector:
        """Construct the wrapper and its base with the run's seed."""
        return AvailabilityAwareSelector(
            base=self.base.build(seed),
            margin=self.margin,
            pool=self.pool,
            priority=self.priority,
        )


SelectorConfig = Annotated[
    RandomSelectorConfig | OortSelectorConfig | PowerOfChoiceConfig | AvailabilitySelectorConfig,
    Field(discriminator="name"),
]
"""Union of every selector config, discriminated by ``name``."""

__all__ = [
    "AvailabilitySelectorConfig",
    "BaseSelectorConfig",
    "OortSelectorConfig",
    "PowerOfChoiceConfig",
    "RandomSelectorConfig",
    "SelectorConfig",
]

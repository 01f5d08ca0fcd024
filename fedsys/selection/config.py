"""Typed configuration of selectors; the name → class registry of this family lives here."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

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
    exploration_factor: float = Field(0.9, ge=0, le=1)
    exploration_decay: float = Field(0.98, gt=0, le=1)
    exploration_min: float = Field(0.3, ge=0, le=1)
    staleness_coef: float = Field(0.1, ge=0)
    clip_bound: float = Field(0.95, gt=0, le=1)
    round_threshold: float = Field(30.0, ge=0, le=100)
    round_penalty: float = Field(2.0, ge=0)
    pacer_step: int = Field(20, ge=1)
    pacer_delta: float = Field(5.0, ge=0)
    pacer_tolerance: float = Field(0.1, ge=0)
    cut_off_util: float = Field(0.95, gt=0, le=1)
    exploit_pool: float = Field(10.0, ge=1, description="exploit among >= this many x slots")
    sample_window: float = Field(5.0, ge=1)
    blacklist_rounds: int | None = Field(None, ge=0)
    blacklist_max_len: float = Field(0.3, ge=0, le=1)

    def build(self, seed: int) -> OortSelector:
        """Construct the selector with the run's seed."""
        return OortSelector(**self.model_dump(exclude={"name"}), seed=seed)


class PowerOfChoiceConfig(_SelectorSettings):
    """Power-of-choice (Cho et al., 2020): of ``ceil(d * k)`` candidates, the ``k`` lossiest."""

    name: Literal["power_of_choice"] = "power_of_choice"
    d: float = Field(2.0, ge=1)

    def build(self, seed: int) -> PowerOfChoiceSelector:
        """Construct the selector with the run's seed."""
        return PowerOfChoiceSelector(d=self.d, seed=seed)


SelectorConfig = Annotated[
    RandomSelectorConfig | OortSelectorConfig | PowerOfChoiceConfig,
    Field(discriminator="name"),
]
"""Union of every selector config, discriminated by ``name``."""

__all__ = ["OortSelectorConfig", "PowerOfChoiceConfig", "RandomSelectorConfig", "SelectorConfig"]

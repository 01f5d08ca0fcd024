"""Participant selectors behind the :class:`Selector` interface."""

from fedsys.selection.base import Selector
from fedsys.selection.oort import OortSelector
from fedsys.selection.oort_state import OortState
from fedsys.selection.power_of_choice import PowerOfChoiceSelector, PowerOfChoiceState
from fedsys.selection.priors import UsesClientPriors, feed_priors
from fedsys.selection.random import RandomSelector

__all__ = [
    "OortSelector",
    "OortState",
    "PowerOfChoiceSelector",
    "PowerOfChoiceState",
    "RandomSelector",
    "Selector",
    "UsesClientPriors",
    "feed_priors",
]

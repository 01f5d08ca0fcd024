"""Round modes: synchronous with over-commitment, deadline-bound, asynchronous buffered."""

from fedsys.sim.rounds.base import RoundMode, RoundOutcome, play_round
from fedsys.sim.rounds.sync import SyncRounds

__all__ = ["RoundMode", "RoundOutcome", "SyncRounds", "play_round"]

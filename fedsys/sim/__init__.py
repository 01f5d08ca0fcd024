"""The virtual-clock simulator: events, round modes and the run loop."""

from fedsys.sim.engine import Engine, EngineParts
from fedsys.sim.events import EventQueue, Launch, VirtualClock
from fedsys.sim.rounds import RoundMode, SyncRounds
from fedsys.sim.simulator import Simulator

__all__ = [
    "Engine",
    "EngineParts",
    "EventQueue",
    "Launch",
    "RoundMode",
    "Simulator",
    "SyncRounds",
    "VirtualClock",
]

"""Why a secure aggregation round stops: the round failed, or a peer broke the protocol."""

from __future__ import annotations


class SecureAggregationError(RuntimeError):
    """The round cannot complete (too many dropouts, bad setup); the server learned nothing."""


class ProtocolViolationError(ValueError):
    """A peer asked for or sent something the protocol forbids; the request is refused."""

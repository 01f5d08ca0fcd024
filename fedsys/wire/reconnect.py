"""The reconnecting client loop every dialling runtime uses (deploy clients, silo sites).

A client dials out (the server never dials a client), runs one session over the
connection, and when the link breaks dials again after a :class:`~fedsys.wire.
transport.Backoff` delay. A session that got through (the server answered) resets the
count, so only consecutive failures lead to giving up, with a one-line error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from fedsys.wire.errors import error_text
from fedsys.wire.transport import Backoff

__all__ = ["RETRYABLE", "keep_connected"]

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")
RETRYABLE: tuple[type[BaseException], ...] = (grpc.aio.AioRpcError, ConnectionError, TimeoutError)
"""Failures of a session that mean "dial again" unless ``fatal`` says otherwise."""


def _never(exc: BaseException) -> BaseException | None:
    return None


async def keep_connected(
    session: Callable[[Callable[[], None]], Awaitable[T]],
    *,
    backoff: Backoff,
    rng: random.Random,
    target: str,
    retry_on: tuple[type[BaseException], ...] = RETRYABLE,
    fatal: Callable[[BaseException], BaseException | None] = _never,
    stop: asyncio.Event | None = None,
    logger: logging.Logger | None = None,
    level: int = logging.WARNING,
) -> T | None:
    """Run ``session`` until it returns, dialling again with backoff when it fails.

    Parameters
    ----------
    session
        One connection's work; it receives ``connected``, to call once the peer has
        answered (this resets the failure count). Its return value ends the loop.
    backoff
        Delays between attempts and when to give up.
    rng
        Draws the jitter (seeded for tests; never a secret).
    target
        What is dialled, for the messages (``host:port``, "the coordinator at ...").
    retry_on
        Exceptions that mean the link failed; anything else propagates at once.
    fatal
        Maps a failure to the exception to raise instead of retrying (an unknown or
        revoked token), or ``None`` to retry.
    stop
        Once set, no new attempt starts and a pending wait ends at once.
    logger, level
        Where each retry is logged: ``"reconnecting"`` with ``target``, ``attempt``,
        ``in_s`` and ``reason`` (the one-line :func:`~fedsys.wire.errors.error_text`).

    Returns
    -------
    T or None
        What the session returned; ``None`` when ``stop`` ended the loop first.

    Raises
    ------
    ConnectionError
        After ``backoff.max_attempts`` consecutive failures.
    """
    log = logger or _LOGGER
    attempt = 0

    def connected() -> None:
        nonlocal attempt
        attempt = 0

    while stop is None or not stop.is_set():
        try:
            return await session(connected)
        except retry_on as exc:
            refused = fatal(exc)
            if refused is not None:
                raise refused from None
            reason = error_text(exc)
        if backoff.exhausted(attempt):
            raise ConnectionError(f"gave up on {target} after {attempt} attempts ({reason})")
        delay = backoff.delay_s(attempt, rng)
        extra = {"target": target, "attempt": attempt + 1, "in_s": round(delay, 2),
                 "reason": reason}
        log.log(level, "reconnecting", extra=extra)
        if stop is None:
            await asyncio.sleep(delay)
        else:
            with contextlib.suppress(TimeoutError):  # a stop ends the wait at once
                await asyncio.wait_for(stop.wait(), delay)
        attempt += 1
    return None

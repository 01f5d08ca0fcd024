"""Run a long-lived coroutine (a server, a client, a site) until a signal stops it."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any


def run_until_signal(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coroutine``; SIGINT/SIGTERM cancel it and return ``None``.

    Cancelling (rather than dying on the signal) lets the coroutine's ``finally``
    blocks close channels and write what they hold.
    """

    async def main() -> Any:
        task = asyncio.ensure_future(coroutine)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await task
        except asyncio.CancelledError:
            return None

    return asyncio.run(main())

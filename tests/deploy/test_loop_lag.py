"""The event-loop lag meter: a histogram of a periodic timer's overshoots."""

from __future__ import annotations

import asyncio
import time

from fedsys.deploy.loop_lag import LoopLag


def test_percentiles_of_counted_lags() -> None:
    lag = LoopLag()
    for ms in [1.0] * 98 + [50.0, 200.0]:
        lag.add(ms)

    result = lag.percentiles_ms()

    assert result["p50"] is not None and 1.0 <= result["p50"] <= 1.1
    assert result["p99"] is not None and 50.0 <= result["p99"] <= 50.1
    assert result["max"] == 200.0


def test_no_samples_no_figures() -> None:
    assert LoopLag().percentiles_ms() == {"p50": None, "p99": None, "max": None}


def test_a_blocked_loop_shows_as_lag() -> None:
    async def block_once() -> dict[str, float | None]:
        lag = LoopLag(interval_s=0.005)
        lag.start()
        await asyncio.sleep(0.05)
        time.sleep(0.1)  # the loop is stuck: the timer wakes ~100 ms late
        await asyncio.sleep(0.05)
        await lag.stop()
        return lag.percentiles_ms()

    result = asyncio.run(block_once())

    assert result["max"] is not None and result["max"] >= 80.0

"""Emulated-device parts on their own: the paced link, the availability schedule, profiles."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from torch import nn

from fedsys.config.schema import DevicesConfig
from fedsys.deploy import emulation
from fedsys.deploy.device_host import parse_profiles
from fedsys.deploy.emulation import (
    AvailabilitySchedule,
    PacedLink,
    follow_availability,
    profile_for,
)
from fedsys.traces import DeviceFleet, save_fleet


def _one_device(sessions: list[tuple[float, float]], period_s: float) -> DeviceFleet:
    return DeviceFleet(
        compute_s_per_sample=np.array([0.01]),
        down_bytes_per_s=np.array([50_000.0]),
        up_bytes_per_s=np.array([25_000.0]),
        period_s=np.array([period_s]),
        avail_offsets=np.array([0, len(sessions)]),
        avail_starts=np.array([s for s, _ in sessions], dtype=float),
        avail_ends=np.array([e for _, e in sessions], dtype=float),
    )


def test_paced_link_takes_latency_plus_bytes_over_rate() -> None:
    link = PacedLink(bytes_per_s=200_000.0, latency_s=0.05)
    payload, chunk = 64 * 1024, 16 * 1024

    async def send() -> float:
        link.start()
        began = time.monotonic()
        for _ in range(payload // chunk):
            await link.carry(chunk)
        return time.monotonic() - began

    elapsed = asyncio.run(send())

    expected = 0.05 + payload / 200_000.0
    assert link.transfer_s(payload) == pytest.approx(expected)
    assert elapsed == pytest.approx(expected, rel=0.10)


def test_schedule_follows_the_trace_sessions_and_wraps_the_period() -> None:
    schedule = AvailabilitySchedule(_one_device([(0.0, 6.0), (9.0, 12.0)], period_s=20.0))

    assert schedule.online(1.0) and not schedule.online(7.0)
    assert schedule.online_until(1.0) == pytest.approx(6.0)
    assert schedule.next_online(7.0) == pytest.approx(9.0)
    assert schedule.next_online(13.0) == pytest.approx(20.0)  # the next period's first session
    assert schedule.next_online(33.0) == pytest.approx(40.0)


def test_a_device_with_no_sessions_never_comes_online() -> None:
    schedule = AvailabilitySchedule(_one_device([], period_s=10.0))

    assert schedule.next_online(3.0) == float("inf")


def test_profile_is_shaped_like_the_simulators_fleet(tmp_path) -> None:
    path = save_fleet(_one_device([(0.0, 6.0)], period_s=20.0), tmp_path / "fleet.csv")
    devices = DevicesConfig(
        source="file",
        path=str(path),
        always_available=False,
        model_cost_ratio=2.0,
        transfer_cost_ratio=4.0,
        time_scale=0.5,
    )

    profile = profile_for(path, devices, 0, nn.Linear(2, 2))

    assert profile.compute_s_per_sample == pytest.approx(0.01 * 2.0 * 0.5)
    assert profile.down_bytes_per_s == pytest.approx(50_000.0 / 4.0 / 0.5)
    assert profile.up_bytes_per_s == pytest.approx(25_000.0 / 4.0 / 0.5)
    assert AvailabilitySchedule(profile.availability).online_until(0.0) == pytest.approx(3.0)


def test_profile_out_of_range_names_the_trace_size(tmp_path) -> None:
    path = save_fleet(_one_device([], period_s=0.0), tmp_path / "fleet.csv")

    with pytest.raises(ValueError, match="hold 1 devices"):
        profile_for(path, DevicesConfig(source="file", path=str(path)), 3, nn.Linear(2, 2))


def test_parse_profiles_reads_ids_ranges_and_lists() -> None:
    assert parse_profiles("3") == [3]
    assert parse_profiles("0-2,7") == [0, 1, 2, 7]
    with pytest.raises(ValueError, match="not a device id"):
        parse_profiles("2-1")


def test_a_device_whose_link_gives_up_tries_again_then_finishes(monkeypatch) -> None:
    # Prepare: always online; the first two sessions give up on the server.
    monkeypatch.setattr(emulation, "RETRY_PAUSE_S", 0.001)
    schedule = AvailabilitySchedule(_one_device([(0.0, 10.0)], period_s=10.0))
    calls: list[int] = []

    async def session() -> str:
        calls.append(1)
        if len(calls) <= 2:
            raise ConnectionError("gave up after 20 attempts")
        return "training complete"

    # Act
    reason = asyncio.run(follow_availability(session, schedule, lambda: 1.0))
    # Assert
    assert reason == "training complete"
    assert len(calls) == 3


def test_a_device_with_no_server_at_all_ends_with_the_error(monkeypatch) -> None:
    monkeypatch.setattr(emulation, "RETRY_PAUSE_S", 0.001)
    schedule = AvailabilitySchedule(_one_device([(0.0, 10.0)], period_s=10.0))

    async def session() -> str:
        raise ConnectionError("gave up after 20 attempts")

    with pytest.raises(ConnectionError, match="gave up"):
        asyncio.run(follow_availability(session, schedule, lambda: 1.0))

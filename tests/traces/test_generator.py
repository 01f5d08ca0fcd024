"""The calibrated generator: determinism, heavy tails, diurnal sessions."""

import numpy as np
import pytest

from fedsys.traces import FleetProfile, generate_fleet, load_default_fleet

FIELDS = (
    "compute_s_per_sample",
    "down_bytes_per_s",
    "up_bytes_per_s",
    "period_s",
    "avail_offsets",
    "avail_starts",
    "avail_ends",
)


def test_same_seed_same_fleet() -> None:
    a, b = generate_fleet(500, seed=42), generate_fleet(500, seed=42)
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_different_seed_different_fleet() -> None:
    a, b = generate_fleet(200, seed=1), generate_fleet(200, seed=2)
    assert not np.array_equal(a.compute_s_per_sample, b.compute_s_per_sample)
    assert not np.array_equal(a.avail_starts[:50], b.avail_starts[:50])


def test_speeds_do_not_depend_on_availability_parameters() -> None:
    a = generate_fleet(100, seed=5)
    b = generate_fleet(100, seed=5, profile=FleetProfile(day_sessions_per_day=3.0))
    np.testing.assert_array_equal(a.compute_s_per_sample, b.compute_s_per_sample)
    np.testing.assert_array_equal(a.down_bytes_per_s, b.down_bytes_per_s)


def test_heavy_tails_and_calibrated_medians() -> None:
    fleet = generate_fleet(20_000, seed=0)
    compute, down_mbps = fleet.compute_s_per_sample, fleet.down_bytes_per_s * 8e-6
    p50, p95 = np.percentile(compute, [50, 95])
    assert p50 == pytest.approx(0.165, rel=0.05)  # 3 x 55 ms
    assert p95 / p50 == pytest.approx(np.exp(1.645 * 0.6), rel=0.1)
    b50, b95 = np.percentile(down_mbps, [50, 95])
    assert b50 == pytest.approx(6.1, rel=0.05)
    assert b95 / b50 > 4.0
    assert np.mean(down_mbps < 3.0) == pytest.approx(0.26, abs=0.02)


def test_diurnal_sessions() -> None:
    fleet = generate_fleet(3_000, seed=0)
    np.testing.assert_array_equal(fleet.period_s, 7 * 86_400)
    assert 1.1 < fleet.num_sessions / fleet.num_clients / 7 < 1.6
    assert 0.3 < fleet.availability_fraction().mean() < 0.4
    share = [len(fleet.available_clients(h * 3600.0)) / 3_000 for h in range(48, 72)]
    night, afternoon = max(share[:6]), min(share[12:20])  # 00:00-05:00 vs 12:00-19:00
    assert night > 3 * afternoon
    assert np.all(fleet.avail_starts == np.round(fleet.avail_starts))  # whole seconds


def test_empty_fleet() -> None:
    fleet = generate_fleet(0, seed=0)
    assert fleet.num_clients == 0 and fleet.available_clients(5.0).size == 0


def test_shipped_default_trace_is_the_documented_generator_output() -> None:
    shipped, fresh = load_default_fleet(), generate_fleet(1000, seed=0)
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(shipped, name), getattr(fresh, name))

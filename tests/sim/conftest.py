"""Fixtures of the simulator tests."""

from __future__ import annotations

import numpy as np
import pytest

from fedsys.traces.fleet import DeviceFleet


@pytest.fixture
def speeds_fleet() -> DeviceFleet:
    """Five always-on devices; device i needs (i + 1) seconds per sample."""
    return DeviceFleet.always_available(
        5,
        compute_s_per_sample=np.arange(1, 6, dtype=float),
        down_bytes_per_s=1e9,
    )

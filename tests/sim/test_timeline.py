"""A simulated round's client timeline agrees with its record and its virtual clock."""

from __future__ import annotations

import numpy as np
import pytest

from fedsys.metrics.timeline import TIMELINE_KEY
from fedsys.sim.rounds.deadline import DeadlineRounds
from fedsys.sim.rounds.sync import SyncRounds
from fedsys.traces.fleet import DeviceFleet
from tests.sim.federation import make_simulator


def test_sync_round_timeline_names_every_selected_client_and_the_kth_arrival(
    speeds_fleet: DeviceFleet,
) -> None:
    sim = make_simulator(speeds_fleet, SyncRounds(overcommit=5 / 3), clients_per_round=3)

    record = sim.run().records[0]
    timeline = record.extra[TIMELINE_KEY]

    rows = {row[0]: row for row in timeline["clients"]}
    assert sorted(rows) == [0, 1, 2, 3, 4]
    assert [rows[c][5] for c in range(5)] == ["c", "c", "c", "s", "s"]
    for client, (_, launch, down, compute, up, _, end) in rows.items():
        assert launch == 0.0
        assert compute == pytest.approx(8 * (client + 1), abs=1e-3)  # 8 samples, i+1 s each
        assert end == pytest.approx(down + compute + up, abs=2e-3)
    assert timeline["closed_by"] == 2  # the third (K-th) arrival closed the round
    assert rows[2][6] == pytest.approx(record.end_s - record.start_s, abs=1e-3)
    assert timeline["available"] == 5


def test_a_dropout_ends_where_the_client_went_offline() -> None:
    fleet = DeviceFleet(
        compute_s_per_sample=np.array([1.0, 2.0, 3.0]),
        down_bytes_per_s=np.full(3, 1e9),
        up_bytes_per_s=np.full(3, 1e9),
        period_s=np.array([100.0, 0.0, 0.0]),
        avail_offsets=np.array([0, 1, 1, 1]),
        avail_starts=np.array([0.0]),
        avail_ends=np.array([5.0]),
    )
    sim = make_simulator(fleet, SyncRounds(overcommit=1.5), clients_per_round=2)

    record = sim.run().records[0]
    rows = {row[0]: row for row in record.extra[TIMELINE_KEY]["clients"]}

    assert rows[0][5] == "d" and rows[0][6] == pytest.approx(5.0)
    assert rows[0][2] + rows[0][3] + rows[0][4] > rows[0][6]  # it needed longer than it had
    assert sum(row[5] == "d" for row in rows.values()) == record.dropouts
    assert sum(row[5] == "c" for row in rows.values()) == record.participants


def test_a_deadline_closes_the_round_with_nobody_closing_it(speeds_fleet: DeviceFleet) -> None:
    mode = DeadlineRounds(deadline_s=17.0, overcommit=5 / 3)
    sim = make_simulator(speeds_fleet, mode, clients_per_round=3)

    record = sim.run().records[0]
    timeline = record.extra[TIMELINE_KEY]

    assert timeline["closed_by"] is None
    assert sum(row[5] == "s" for row in timeline["clients"]) == record.stragglers == 3


def test_an_async_aggregation_lists_its_buffer_with_launches_before_the_window(
    speeds_fleet: DeviceFleet,
) -> None:
    from fedsys.sim.rounds.buffered import BufferedAsyncRounds

    mode = BufferedAsyncRounds(max_concurrency=4, buffer_size=2)
    sim = make_simulator(speeds_fleet, mode, rounds=3, clients_per_round=2)

    records = sim.run().records

    for record in records:
        timeline = record.extra[TIMELINE_KEY]
        completed = [row for row in timeline["clients"] if row[5] == "c"]
        assert len(completed) == record.participants == 2
        assert timeline["closed_by"] == completed[-1][0]  # the B-th arrival aggregated
        assert completed[-1][6] == pytest.approx(record.end_s - record.start_s, abs=2e-3)
    later = [row for r in records[1:] for row in r.extra[TIMELINE_KEY]["clients"]]
    assert any(row[1] < 0 for row in later)  # launched before its aggregation's window

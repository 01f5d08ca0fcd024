import numpy as np
import pytest

from fedsys.sim.rounds.buffered import BufferedAsyncRounds, staleness_weight
from fedsys.sim.rounds.deadline import DeadlineRounds
from fedsys.sim.rounds.sync import SyncRounds
from fedsys.traces.fleet import DeviceFleet
from tests.sim.federation import make_simulator


def test_virtual_time_is_download_plus_compute_plus_upload() -> None:
    fleet = DeviceFleet.always_available(
        1, compute_s_per_sample=0.5, down_bytes_per_s=1000.0, up_bytes_per_s=250.0
    )
    sim = make_simulator(fleet, SyncRounds(overcommit=1.0), clients_per_round=1, steps=3)
    model_bytes = (4 * 2 + 2) * 4

    record = sim.run().records[0]

    samples = 3 * 4  # three steps of four samples
    expected = model_bytes / 1000.0 + samples * 0.5 + model_bytes / 250.0
    assert record.end_s == pytest.approx(expected)
    assert record.bytes_up == model_bytes


def test_overcommit_keeps_the_fastest_k_and_discards_stragglers(speeds_fleet) -> None:
    sim = make_simulator(speeds_fleet, SyncRounds(overcommit=5 / 3), clients_per_round=3)

    record = sim.run().records[0]

    assert record.selected == 5
    assert sorted(record.extra["clients"]) == [0, 1, 2]
    assert record.stragglers == 2
    assert record.participants == 3
    assert record.end_s == pytest.approx(3 * 8, rel=1e-6)  # 8 samples at 3 s each


def test_client_going_offline_mid_round_drops_out() -> None:
    # Client 0 is fastest but its session ends at t=5; it needs 8 s.
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

    assert record.dropouts == 1
    assert sorted(record.extra["clients"]) == [1, 2]
    assert record.end_s == pytest.approx(24.0, rel=1e-6)


def test_deadline_excludes_late_arrivals(speeds_fleet) -> None:
    mode = DeadlineRounds(deadline_s=17.0, overcommit=5 / 3)
    sim = make_simulator(speeds_fleet, mode, clients_per_round=3)

    record = sim.run().records[0]

    assert sorted(record.extra["clients"]) == [0, 1]  # 8 s and 16 s; 24 s is late
    assert record.stragglers == 3
    assert record.end_s == pytest.approx(17.0)


def test_short_deadline_round_is_skipped_without_changing_the_model(speeds_fleet) -> None:
    mode = DeadlineRounds(deadline_s=5.0, overcommit=5 / 3, min_participants=1)
    sim = make_simulator(speeds_fleet, mode, clients_per_round=3, rounds=2)

    result = sim.run()

    assert [r.participants for r in result.records] == [0, 0]
    assert result.records[0].extra["short"]
    assert result.records[1].start_s == pytest.approx(5.0)
    assert result.records[0].accuracy == result.records[1].accuracy


def test_short_deadline_round_is_retried_up_to_the_limit(speeds_fleet) -> None:
    mode = DeadlineRounds(
        deadline_s=10.0, overcommit=1.0, min_participants=2, on_short_round="retry", max_retries=2
    )
    sim = make_simulator(speeds_fleet, mode, clients_per_round=2)

    record = sim.run().records[0]

    assert record.extra["attempts"] <= 3
    assert record.end_s == pytest.approx(10.0 * record.extra["attempts"], rel=1e-6)
    if record.extra["short"]:
        assert record.participants == 0


def test_staleness_weight_follows_fedbuff() -> None:
    np.testing.assert_allclose([staleness_weight(s) for s in (0, 1, 3)], [1.0, 1 / np.sqrt(2), 0.5])
    with pytest.raises(ValueError):
        staleness_weight(-1)


def test_async_aggregates_every_buffer_and_cuts_off_stale_updates(speeds_fleet) -> None:
    # All 5 train at once; the slow ones arrive after aggregations have moved on.
    mode = BufferedAsyncRounds(max_concurrency=5, buffer_size=2, max_staleness=0)
    sim = make_simulator(speeds_fleet, mode, rounds=4)

    result = sim.run()

    assert len(result.records) == 4
    assert all(r.participants == 2 for r in result.records)
    assert all(r.extra["max_staleness"] == 0 for r in result.records)
    assert sum(r.stragglers for r in result.records) > 0
    ends = [r.end_s for r in result.records]
    assert ends == sorted(ends)


def test_async_with_tolerance_aggregates_stale_updates(speeds_fleet) -> None:
    mode = BufferedAsyncRounds(max_concurrency=5, buffer_size=2, max_staleness=10)
    result = make_simulator(speeds_fleet, mode, rounds=6).run()
    assert max(r.extra["max_staleness"] for r in result.records) >= 1
    assert sum(r.stragglers for r in result.records) == 0


def test_same_seed_gives_identical_runs(speeds_fleet) -> None:
    runs = [make_simulator(speeds_fleet, SyncRounds(1.3), rounds=3).run() for _ in range(2)]
    a, b = (r.records for r in runs)
    assert [x.extra["clients"] for x in a] == [x.extra["clients"] for x in b]
    assert [x.accuracy for x in a] == [x.accuracy for x in b]
    assert [x.train_loss for x in a] == [x.train_loss for x in b]

import pytest

from fedsys.sim.events import (
    ClientArrived,
    ClientDropped,
    EventQueue,
    Launch,
    RoundDeadline,
    VirtualClock,
    outcome_event,
)


def _launch(offline_s: float) -> Launch:
    return Launch(
        client_id=3,
        version=0,
        start_s=10.0,
        download_s=1.0,
        compute_s=5.0,
        upload_s=2.0,
        offline_s=offline_s,
        num_samples=4,
        bytes_down=100,
        bytes_up=100,
    )


def test_queue_pops_in_time_order_and_keeps_insertion_order_on_ties() -> None:
    queue = EventQueue()
    queue.push(5.0, RoundDeadline(0))
    queue.push(1.0, RoundDeadline(1))
    queue.push(5.0, RoundDeadline(2))

    popped = [queue.pop() for _ in range(3)]

    assert [(t, e.round_idx) for t, e in popped] == [(1.0, 1), (5.0, 0), (5.0, 2)]
    assert len(queue) == 0


def test_nan_time_is_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        EventQueue().push(float("nan"), RoundDeadline(0))


def test_clock_only_moves_forward() -> None:
    clock = VirtualClock()
    clock.advance_to(3.0)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance_to(2.0)
    assert clock.now_s == 3.0


def test_client_online_until_its_upload_arrives() -> None:
    time_s, event = outcome_event(_launch(offline_s=18.0))
    assert isinstance(event, ClientArrived)
    assert time_s == pytest.approx(18.0)


def test_client_offline_before_upload_finishes_drops_at_offline_time() -> None:
    time_s, event = outcome_event(_launch(offline_s=17.9))
    assert isinstance(event, ClientDropped)
    assert time_s == pytest.approx(17.9)

"""Which job a site's next free worker goes to (fair share between the jobs it holds)."""

from fedsys.silo.site_job import SiteJob
from fedsys.silo.site_share import next_job
from fedsys.wire.protos import silo_pb2


def _job(job_id: str, analyst: str, queued: int = 1, running: int = 0, served: int = 0,
         late: bool = False) -> SiteJob:
    job = SiteJob(job_id=job_id, analyst=analyst, late_binding=late, running=running,
                  served=served)
    for i in range(queued):
        job.pending.append(silo_pb2.TaskAssignment(task_id=f"{job_id}/{i}", job_id=job_id))
    return job


def test_the_analyst_holding_fewest_workers_goes_first_then_the_job_holding_fewest():
    a1 = _job("a1", "alice", running=1)
    a2 = _job("a2", "alice", running=0)
    b1 = _job("b1", "bob", running=1)
    b2 = _job("b2", "bob", running=1)

    assert next_job([a1, a2, b1, b2], free=1) is a2  # alice holds 1, bob 2; a2 holds none


def test_ties_go_to_the_job_served_longest_ago():
    first = _job("first", "alice", served=7)
    second = _job("second", "bob", served=3)

    assert next_job([first, second], free=1) is second


def test_a_job_with_nothing_runnable_or_ended_is_skipped():
    waiting = _job("waiting", "alice")
    waiting.pending[0].inputs_pushed = True
    waiting.pending[0].inputs.append("model-1")  # its pushed input is not here yet
    ended = _job("ended", "bob")
    ended.end()
    ready = _job("ready", "carol", running=3)

    assert next_job([waiting, ended, ready], free=1) is ready
    assert next_job([waiting, ended], free=1) is None


def test_with_no_free_worker_only_an_early_binding_job_queues_one_in_the_pool():
    late = _job("late", "alice", late=True)
    early = _job("early", "bob", running=2)

    assert next_job([late, early], free=0) is early
    assert next_job([late, early], free=-1) is None

"""The site manager's handling of pushed inputs and of several jobs at once (no connection
needed: the logic is local)."""

from fedsys.silo.site import SiteManager, SiteSettings
from fedsys.wire.chunks import sha256_hex, split
from fedsys.wire.protos import silo_pb2
from fedsys.wire.transport import ChannelSecurity

MODEL = bytes(range(256)) * 1024  # 256 KiB: four 64 KiB stream chunks


def _site(max_input_bytes: int = 1 << 20) -> SiteManager:
    site = SiteManager("127.0.0.1:1", "token", ChannelSecurity(insecure=True), {},
                       settings=SiteSettings(workers=1, max_input_bytes=max_input_bytes))
    site._start_job(silo_pb2.JobMode(job_id="job", late_binding=False))
    site._jobs["job"].pending.append(silo_pb2.TaskAssignment(
        task_id="round-1/site-0", task="silo.train", inputs=["model-1"], inputs_pushed=True,
        job_id="job"))
    return site


def _stream(site: SiteManager, payload: bytes, seal: str) -> None:
    for chunk in split(payload, 64 * 1024, checksum=""):
        site._on_input(site._jobs["job"], silo_pb2.InputPart(
            job_id="job", key="model-1", chunk=chunk, streamed=True))
    site._on_input(site._jobs["job"], silo_pb2.InputPart(
        job_id="job", key="model-1", sealed_sha256=seal, meta_json="{}"))


def test_a_streamed_input_runs_its_task_once_its_seal_checks_out():
    site = _site()
    assert site._runnable() is None  # waits for its pushed input
    _stream(site, MODEL, sha256_hex(MODEL))
    assert site._jobs["job"].inputs["model-1"] == (MODEL, "{}")
    assert site._runnable()[0].task_id == "round-1/site-0"


def test_a_refused_stream_lets_its_task_fetch_the_input_instead_of_waiting_forever():
    site = _site()
    _stream(site, MODEL, sha256_hex(b"another model"))
    assert "model-1" not in site._jobs["job"].inputs and "model-1" in site._jobs["job"].refused
    picked = site._runnable()  # runs now: _input() pulls the coordinator's whole copy
    assert picked is not None and picked[0].task_id == "round-1/site-0"


def test_an_oversize_push_is_refused_and_its_task_fetches_it():
    site = _site(max_input_bytes=1000)
    for chunk in split(MODEL, 64 * 1024):
        site._on_input(site._jobs["job"], silo_pb2.InputPart(
            job_id="job", key="model-1", chunk=chunk, meta_json="{}"))
    assert "model-1" in site._jobs["job"].refused and not site._jobs["job"].partial
    assert site._runnable() is not None


# ---------------------------------------------------------------- several jobs at once


def _assign(site: SiteManager, job_id: str, count: int) -> None:
    tasks = [silo_pb2.TaskAssignment(task_id=f"{job_id}/t{i}", task="silo.spin", job_id=job_id)
             for i in range(count)]
    site._on_message(silo_pb2.CoordinatorMessage(assign=silo_pb2.Assign(tasks=tasks)))


def _start(site: SiteManager, job_id: str, analyst: str, late: bool = False) -> None:
    site._on_message(silo_pb2.CoordinatorMessage(mode=silo_pb2.JobMode(
        job_id=job_id, analyst=analyst, late_binding=late)))


def _take(site: SiteManager) -> str:
    """Start the next task as the dispatcher would; the job it belongs to."""
    picked = site._runnable()
    assert picked is not None
    _task, job = picked
    site._free -= 1
    job.running += 1
    return job.job_id


def _sent(site: SiteManager) -> list[silo_pb2.SiteMessage]:
    messages = []
    while not site._outbox.empty():
        messages.append(site._outbox.get_nowait())
    return messages


def test_free_workers_go_to_each_analyst_in_turn_however_many_jobs_each_sent():
    site = SiteManager("127.0.0.1:1", "token", ChannelSecurity(insecure=True), {},
                       settings=SiteSettings(workers=4))
    for job_id in ("a1", "a2", "a3"):  # alice sent three jobs, bob one
        _start(site, job_id, "alice")
        _assign(site, job_id, 4)
    _start(site, "b1", "bob")
    _assign(site, "b1", 4)

    taken = [_take(site) for _ in range(4)]

    # Two workers each: bob's one job gets as many as alice's three together.
    assert sorted(taken).count("b1") == 2
    assert len({t for t in taken if t.startswith("a")}) == 2  # alice's spread over her jobs


def test_a_query_sent_while_training_holds_every_worker_takes_the_next_free_one():
    site = SiteManager("127.0.0.1:1", "token", ChannelSecurity(insecure=True), {},
                       settings=SiteSettings(workers=2))
    _start(site, "train", "alice")
    _assign(site, "train", 6)  # early binding: more queued than workers
    assert [_take(site), _take(site)] == ["train", "train"]
    _start(site, "query", "bob")
    _assign(site, "query", 1)

    site._release(site._jobs["train"])  # a training task ends

    assert _take(site) == "query"  # before the four training tasks queued ahead of it


def test_a_job_end_drops_its_queued_tasks_and_inputs_at_once_and_the_other_job_goes_on():
    site = SiteManager("127.0.0.1:1", "token", ChannelSecurity(insecure=True), {},
                       settings=SiteSettings(workers=1))
    _start(site, "keep", "alice")
    _start(site, "drop", "bob")
    _assign(site, "keep", 2)
    _assign(site, "drop", 3)
    dropped = site._jobs["drop"]
    dropped.inputs["model"] = (b"weights", "{}")

    site._on_message(silo_pb2.CoordinatorMessage(end=silo_pb2.JobEnd(job_id="drop")))
    _assign(site, "drop", 1)  # late messages of the ended job are ignored

    assert "drop" not in site._jobs and dropped.ended
    assert not dropped.pending and not dropped.inputs
    assert [_take(site), _take(site)] == ["keep", "keep"]


def test_a_late_binding_job_started_while_every_worker_is_busy_still_asks_for_one_task():
    site = SiteManager("127.0.0.1:1", "token", ChannelSecurity(insecure=True), {},
                       settings=SiteSettings(workers=2))
    _start(site, "late-1", "alice", late=True)
    requests = [m.request for m in _sent(site) if m.WhichOneof("kind") == "request"]
    assert [(r.job_id, r.count) for r in requests] == [("late-1", 2)]  # as plain late binding
    _assign(site, "late-1", 2)
    _take(site), _take(site)

    _start(site, "late-2", "bob", late=True)
    requests = [m.request for m in _sent(site) if m.WhichOneof("kind") == "request"]
    assert [(r.job_id, r.count) for r in requests] == [("late-2", 1)]  # no worker free
    site._release(site._jobs["late-1"])

    requests = [m.request for m in _sent(site) if m.WhichOneof("kind") == "request"]
    assert ("late-1", 1) in [(r.job_id, r.count) for r in requests]  # the freed worker
    assert all(job.holds() <= 2 for job in site._jobs.values())  # never beyond the workers

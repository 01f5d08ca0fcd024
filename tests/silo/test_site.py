"""The site manager's handling of pushed inputs (no connection needed: the logic is local)."""

from fedsys.silo.site import SiteManager, SiteSettings
from fedsys.wire.chunks import sha256_hex, split
from fedsys.wire.protos import silo_pb2
from fedsys.wire.transport import ChannelSecurity

MODEL = bytes(range(256)) * 1024  # 256 KiB: four 64 KiB stream chunks


def _site(max_input_bytes: int = 1 << 20) -> SiteManager:
    site = SiteManager("127.0.0.1:1", "token", ChannelSecurity(insecure=True), {},
                       settings=SiteSettings(workers=1, max_input_bytes=max_input_bytes))
    site._start_job(silo_pb2.JobMode(job_id="job", late_binding=False))
    site._job.pending.append(silo_pb2.TaskAssignment(
        task_id="round-1/site-0", task="silo.train", inputs=["model-1"], inputs_pushed=True,
        job_id="job"))
    return site


def _stream(site: SiteManager, payload: bytes, seal: str) -> None:
    for chunk in split(payload, 64 * 1024, checksum=""):
        site._on_input(silo_pb2.InputPart(job_id="job", key="model-1", chunk=chunk,
                                          streamed=True))
    site._on_input(silo_pb2.InputPart(job_id="job", key="model-1", sealed_sha256=seal,
                                      meta_json="{}"))


def test_a_streamed_input_runs_its_task_once_its_seal_checks_out():
    site = _site()
    assert site._runnable() is None  # waits for its pushed input
    _stream(site, MODEL, sha256_hex(MODEL))
    assert site._job.inputs["model-1"] == (MODEL, "{}")
    assert site._runnable().task_id == "round-1/site-0"


def test_a_refused_stream_lets_its_task_fetch_the_input_instead_of_waiting_forever():
    site = _site()
    _stream(site, MODEL, sha256_hex(b"another model"))
    assert "model-1" not in site._job.inputs and "model-1" in site._job.refused
    task = site._runnable()  # runs now: _input() pulls the coordinator's whole copy
    assert task is not None and task.task_id == "round-1/site-0"


def test_an_oversize_push_is_refused_and_its_task_fetches_it():
    site = _site(max_input_bytes=1000)
    for chunk in split(MODEL, 64 * 1024):
        site._on_input(silo_pb2.InputPart(job_id="job", key="model-1", chunk=chunk,
                                          meta_json="{}"))
    assert "model-1" in site._job.refused and not site._job.partial
    assert site._runnable() is not None

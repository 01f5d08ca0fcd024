"""The persisted job queue: accepted jobs survive a restart, running ones are requeued."""

from __future__ import annotations

import json

import pytest

from fedsys.federation.store import JobStore


def test_a_job_is_on_disk_once_accepted_and_comes_back_after_a_restart(tmp_path):
    store = JobStore(tmp_path)
    first = store.add("alice", "query", {"sql": "SELECT 1"}, "SELECT 1")
    second = store.add("bob", "training", {"config_yaml": "rounds: 1"}, "train")
    store.update(first.job_id, state="running")

    reloaded = JobStore(tmp_path).load()

    assert [j.job_id for j in reloaded] == [first.job_id, second.job_id]
    assert [j.state for j in reloaded] == ["queued", "queued"]  # running -> queued again
    assert reloaded[0].request == {"sql": "SELECT 1"}
    assert "requeued after a coordinator restart" in JobStore(tmp_path).logs(first.job_id)[-1]


def test_finished_jobs_keep_their_state_and_result(tmp_path):
    store = JobStore(tmp_path)
    job = store.add("alice", "query", {"sql": "SELECT 1"}, "SELECT 1")
    store.write_result(job.job_id, {"columns": ["x"], "rows": [[float("nan")]]})
    store.update(job.job_id, state="done")

    again = JobStore(tmp_path)
    again.load()

    assert again.jobs[job.job_id].state == "done"
    assert again.result(job.job_id) == {"columns": ["x"], "rows": [[None]]}
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_corrupt_job_file_is_named(tmp_path):
    store = JobStore(tmp_path)
    job = store.add("alice", "query", {}, "q")
    path = store.folder(job.job_id) / "job.json"
    path.write_text(json.dumps({"job_id": job.job_id}))

    with pytest.raises(ValueError, match=r"cannot read job file .*job\.json"):
        JobStore(tmp_path).load()

"""The analysts' Python API to a standing federation.

::

    from fedsys.federation import Federation

    fed = Federation("coordinator.example.org:7000", token_file="alice.token", ca="ca.pem")
    answer = fed.query("SELECT sex, COUNT(*) FROM visits GROUP BY sex")
    print(answer.columns, answer.rows)
    job_id = fed.submit("run.yaml")          # a run config trained across the sites
    fed.wait(job_id)
    fed.download(job_id, "runs/federated")   # rounds.jsonl, summary.json, plots, weights

Every call is one gRPC request with the analyst's token; the coordinator keeps the jobs,
so an analyst may submit, disconnect and fetch the result later (``fedsys jobs``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from fedsys.federation.store import FINISHED
from fedsys.metrics.writers import atomic_write_bytes
from fedsys.wire import tls
from fedsys.wire.auth import bearer_metadata, read_token
from fedsys.wire.protos import federation_pb2, federation_pb2_grpc
from fedsys.wire.transport import DEFAULT_MAX_MESSAGE_BYTES

__all__ = ["Federation", "FederationError", "JobFailedError", "JobRefusedError", "QueryAnswer"]


class FederationError(RuntimeError):
    """The coordinator refused a request or could not be reached (one line, no traceback).

    ``code`` is the gRPC status (``UNAVAILABLE``: not reached; worth another try).
    """

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class JobFailedError(FederationError):
    """A job ended failed or cancelled; ``info`` is its last status."""

    def __init__(self, info: federation_pb2.JobInfo) -> None:
        super().__init__(f"job {info.job_id} {info.state}: {info.error}")
        self.info = info


class JobRefusedError(JobFailedError):
    """Sites refused the job under their own rules; ``refused`` holds one line per site,
    ``site NAME: reason`` (a hidden column, a DP-only column asked exactly, a spent
    budget, a model the site does not run)."""

    def __init__(self, info: federation_pb2.JobInfo) -> None:
        super().__init__(info)
        self.refused = list(info.refused)


def job_error(info: federation_pb2.JobInfo) -> JobFailedError:
    """The error a failed or cancelled job raises (a sites' refusal as such)."""
    return JobRefusedError(info) if info.refused else JobFailedError(info)


@dataclass(frozen=True)
class QueryAnswer:
    """A query's answer: the table, what it cost, and its job."""

    job_id: str
    columns: list[str]
    rows: list[list[Any]]
    duration_s: float
    bytes_moved: int
    noise: dict[str, Any]


class Federation:
    """A connection to a standing coordinator as one analyst.

    Parameters
    ----------
    address
        ``host:port`` of the coordinator.
    token, token_file
        The analyst's bearer token (or the file holding it).
    ca
        The CA certificate that signed the coordinator's (TLS); ``None`` with ``insecure``.
    insecure
        Plaintext (explicit opt-out).
    timeout_s
        Deadline of each call.
    """

    def __init__(self, address: str, token: str | None = None,
                 token_file: str | Path | None = None, ca: str | Path | None = None,
                 insecure: bool = False, timeout_s: float = 60.0,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.address = address
        self.token = token
        self.token_file = token_file
        self.ca = ca
        self.insecure = insecure
        self.timeout_s = timeout_s
        self.max_message_bytes = max_message_bytes
        self._stub: federation_pb2_grpc.FederationStub | None = None
        self._channel: grpc.Channel | None = None

    def _call(self, method: str, request: Any, timeout_s: float | None = None) -> Any:
        if self._stub is None:
            self._stub = federation_pb2_grpc.FederationStub(self._open())
        token = self.token or read_token(Path(str(self.token_file)))
        try:
            return getattr(self._stub, method)(request, metadata=bearer_metadata(token),
                                               timeout=timeout_s or self.timeout_s)
        except grpc.RpcError as exc:
            details = exc.details() if hasattr(exc, "details") else str(exc)
            code = exc.code() if hasattr(exc, "code") else None
            raise FederationError(f"{method}: {details}", code) from None

    def _open(self) -> grpc.Channel:
        options = [("grpc.max_receive_message_length", self.max_message_bytes),
                   ("grpc.max_send_message_length", self.max_message_bytes)]
        if self.insecure:
            self._channel = grpc.insecure_channel(self.address, options=options)
        elif self.ca is None:
            raise FederationError("TLS is on by default: pass the coordinator's CA "
                                  "certificate (ca=..., --ca), or insecure=True")
        else:
            credentials = tls.channel_credentials(Path(self.ca), None, None)
            self._channel = grpc.secure_channel(self.address, credentials, options=options)
        return self._channel

    def close(self) -> None:
        """Close the channel."""
        if self._channel is not None:
            self._channel.close()
            self._channel, self._stub = None, None

    def __enter__(self) -> Federation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ jobs

    def submit_query(self, sql: str, epsilon: float | None = None, delta: float = 0.0,
                     mechanism: str = "laplace", secure: bool = False, parts: int = 1,
                     bounds: Mapping[str, Sequence[float]] | None = None,
                     domains: Mapping[str, Sequence[Any]] | None = None,
                     dataset: str = "", on_site_failure: str = "wait"
                     ) -> federation_pb2.JobInfo:
        """Queue a query; its job (follow it with :meth:`wait`)."""
        request = federation_pb2.QueryRequest(
            sql=sql, epsilon=epsilon or 0.0, delta=delta, mechanism=mechanism,
            secure=secure, parts=parts, dataset=dataset, on_site_failure=on_site_failure,
            bounds_json=json.dumps(dict(bounds or {})),
            domains_json=json.dumps(dict(domains or {})))
        return self._call("SubmitQuery", request)

    def query(self, sql: str, timeout_s: float = 600.0, **options: Any) -> QueryAnswer:
        """Run a query and wait for its answer (options as :meth:`submit_query`).

        Raises
        ------
        JobRefusedError
            If a site refused it under its own rules (the message names site and reason).
        JobFailedError
            If the query failed otherwise or was cancelled.
        """
        info = self.submit_query(sql, **options)
        self.wait(info.job_id, timeout_s)
        result = self.result(info.job_id)
        return QueryAnswer(info.job_id, result["columns"], result["rows"],
                           result["duration_s"], result["bytes_moved"], result["noise"])

    def submit(self, config: str | Path, on_site_failure: str = "wait") -> str:
        """Queue a training job from a run config (a file path, or YAML text); its id."""
        text = Path(config).read_text() if _is_path(config) else str(config)
        request = federation_pb2.TrainingRequest(config_yaml=text,
                                                 on_site_failure=on_site_failure)
        return str(self._call("SubmitTraining", request).job_id)

    def jobs(self, all_analysts: bool = False) -> list[federation_pb2.JobInfo]:
        """This analyst's jobs (or everyone's, without what others asked)."""
        return list(self._call("ListJobs", federation_pb2.ListRequest(
            all_analysts=all_analysts)).jobs)

    def status(self, job_id: str, wait_s: float = 0.0) -> federation_pb2.JobInfo:
        """A job's state (``wait_s``: answer as soon as it ends, or after that long)."""
        return self._call("JobStatus", federation_pb2.JobRef(job_id=job_id, wait_s=wait_s),
                          timeout_s=self.timeout_s + wait_s)

    def logs(self, job_id: str) -> list[str]:
        """A job's log lines."""
        return list(self._call("JobLogs", federation_pb2.JobRef(job_id=job_id)).lines)

    def cancel(self, job_id: str) -> federation_pb2.JobInfo:
        """Cancel a job (its queued tasks are freed at the sites)."""
        return self._call("CancelJob", federation_pb2.JobRef(job_id=job_id))

    def wait(self, job_id: str, timeout_s: float = 600.0) -> federation_pb2.JobInfo:
        """Wait until the job ends.

        Raises
        ------
        JobFailedError
            If it failed or was cancelled.
        TimeoutError
            If it has not ended within ``timeout_s``.

        A coordinator that cannot be reached (restarting) is asked again until the
        deadline: its jobs are persisted and resume when it is back.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            try:
                info = self.status(job_id, wait_s=max(0.0, min(30.0, left)))
            except FederationError as exc:  # the coordinator restarting: jobs outlive it
                if exc.code != grpc.StatusCode.UNAVAILABLE or left <= 0:
                    raise
                time.sleep(1.0)
                continue
            if info.state in FINISHED:
                if info.state != "done":
                    raise job_error(info)
                return info
            if left <= 0:
                raise TimeoutError(f"job {job_id} is still {info.state} after {timeout_s:.0f} s")

    def result(self, job_id: str) -> dict[str, Any]:
        """A finished job's answer (a query's table, a training job's summary).

        Raises
        ------
        JobFailedError
            If the job failed or was cancelled.
        FederationError
            If it has not finished.
        """
        reply = self._call("JobResult", federation_pb2.JobRef(job_id=job_id))
        if reply.info.state in ("failed", "cancelled"):
            raise job_error(reply.info)
        if not reply.result_json:
            raise FederationError(f"job {job_id} is {reply.info.state}: no result yet")
        return dict(json.loads(reply.result_json))

    def download(self, job_id: str, out_dir: str | Path) -> list[Path]:
        """Write a training job's run folder into ``out_dir``; the files written."""
        reply = self._call("JobResult", federation_pb2.JobRef(job_id=job_id))
        out = Path(out_dir)
        written = []
        for item in reply.files:
            target = (out / item.name).resolve()
            if out.resolve() not in target.parents:
                raise FederationError(f"refusing run file outside {out}: {item.name!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, item.data)
            written.append(target)
        return written


def _is_path(config: str | Path) -> bool:
    if isinstance(config, Path):
        return True
    return "\n" not in config and len(config) < 4096 and Path(config).is_file()

"""The analysts' gRPC service on a standing coordinator (``federation.proto``).

The role interceptor (:mod:`fedsys.silo.roles`) has already refused any caller without
an analyst token; each handler names the analyst from the token and hands the request
to the :class:`~fedsys.federation.service.StandingCoordinator`. An analyst sees, follows,
cancels and fetches only its own jobs; a refused request ends with a one-line reason.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import grpc

from fedsys.analytics.planner import UnsupportedQueryError
from fedsys.config.loader import ConfigError
from fedsys.federation.store import JobRecord
from fedsys.wire.auth import TokenStore, token_from_metadata
from fedsys.wire.protos import federation_pb2, federation_pb2_grpc

if TYPE_CHECKING:
    from fedsys.federation.service import StandingCoordinator

__all__ = ["FederationServicer", "info_of"]

MAX_WAIT_S = 60.0
"""Longest a ``JobStatus`` call holds its answer waiting for the job to end."""


def info_of(job: JobRecord, position: int = 0, public: bool = False) -> federation_pb2.JobInfo:
    """A job as the wire carries it (``public``: without what the analyst asked)."""
    return federation_pb2.JobInfo(
        job_id=job.job_id, analyst=job.analyst, kind=job.kind, state=job.state,
        submitted_s=job.submitted_s, started_s=job.started_s, finished_s=job.finished_s,
        error="" if public else job.error, refused=[] if public else job.refused,
        summary="" if public else job.summary, position=position, progress=job.progress)


class FederationServicer(federation_pb2_grpc.FederationServicer):
    """gRPC face of a :class:`StandingCoordinator` for analysts."""

    def __init__(self, service: StandingCoordinator) -> None:
        self.service = service
        self._tokens = TokenStore(service.analyst_tokens)

    def _analyst(self, context: grpc.aio.ServicerContext) -> str:
        return self._tokens.identify(token_from_metadata(context.invocation_metadata()))

    async def _refuse(self, context: grpc.aio.ServicerContext, exc: Exception) -> Any:
        code = {KeyError: grpc.StatusCode.NOT_FOUND,
                PermissionError: grpc.StatusCode.PERMISSION_DENIED}.get(
                    type(exc), grpc.StatusCode.INVALID_ARGUMENT)
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        await context.abort(code, str(text))

    def _info(self, job: JobRecord) -> federation_pb2.JobInfo:
        return info_of(job, self.service.position(job))

    async def SubmitQuery(  # noqa: N802 (gRPC method name)
        self, request: federation_pb2.QueryRequest, context: grpc.aio.ServicerContext
    ) -> federation_pb2.JobInfo:
        analyst = self._analyst(context)
        try:
            fields = {"sql": request.sql, "epsilon": request.epsilon, "delta": request.delta,
                      "mechanism": request.mechanism or "laplace", "secure": request.secure,
                      "parts": request.parts or 1, "dataset": request.dataset,
                      "bounds": _json_object(request.bounds_json, "bounds"),
                      "domains": _json_object(request.domains_json, "domains"),
                      "on_site_failure": request.on_site_failure or "wait"}
            job = self.service.submit_query(analyst, fields)
        except (ValueError, UnsupportedQueryError) as exc:
            return await self._refuse(context, exc)
        return self._info(job)

    async def SubmitTraining(  # noqa: N802 (gRPC method name)
        self, request: federation_pb2.TrainingRequest, context: grpc.aio.ServicerContext
    ) -> federation_pb2.JobInfo:
        analyst = self._analyst(context)
        try:
            job = self.service.submit_training(analyst, request.config_yaml,
                                               request.on_site_failure)
        except (ValueError, ConfigError) as exc:
            return await self._refuse(context, exc)
        return self._info(job)

    async def ListJobs(  # noqa: N802 (gRPC method name)
        self, request: federation_pb2.ListRequest, context: grpc.aio.ServicerContext
    ) -> federation_pb2.JobList:
        analyst = self._analyst(context)
        jobs = self.service.jobs(None if request.all_analysts else analyst)
        return federation_pb2.JobList(jobs=[
            info_of(j, self.service.position(j), public=j.analyst != analyst) for j in jobs])

    async def JobStatus(  # noqa: N802 (gRPC method name)
        self, request: federation_pb2.JobRef, context: grpc.aio.ServicerContext
    ) -> federation_pb2.JobInfo:
        analyst = self._analyst(context)
        try:
            self.service.job(analyst, request.job_id)
        except KeyError as exc:
            return await self._refuse(context, exc)
        await self.service.wait(request.job_id, min(MAX_WAIT_S, max(0.0, request.wait_s)))
        return self._info(self.service.job(analyst, request.job_id))

    async def JobLogs(  # noqa: N802 (gRPC method name)
        self, request: federation_pb2.JobRef, context: grpc.aio.ServicerContext
    ) -> federation_pb2.LogLines:
        analyst = self._analyst(context)
        try:
            self.service.job(analyst, request.job_id)
        except KeyError as exc:
            return await self._refuse(context, exc)
        return federation_pb2.LogLines(lines=self.service.store.logs(request.job_id))

    async def CancelJob(  # noqa: N802 (gRPC method name)
        self, request: federation_pb2.JobRef, context: grpc.aio.ServicerContext
    ) -> federation_pb2.JobInfo:
        analyst = self._analyst(context)
        try:
            return self._info(self.service.cancel(analyst, request.job_id))
        except KeyError as exc:
            return await self._refuse(context, exc)

    async def JobResult(  # noqa: N802 (gRPC method name)
        self, request: federation_pb2.JobRef, context: grpc.aio.ServicerContext
    ) -> federation_pb2.ResultReply:
        analyst = self._analyst(context)
        try:
            job = self.service.job(analyst, request.job_id)
        except KeyError as exc:
            return await self._refuse(context, exc)
        store = self.service.store
        result = store.result(job.job_id)
        files = await asyncio.to_thread(lambda: [
            federation_pb2.RunFile(name=name, data=data)
            for name, data in store.run_files(job.job_id)])
        return federation_pb2.ResultReply(
            info=self._info(job), result_json=json.dumps(result) if result else "",
            files=files)


def _json_object(text: str, what: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object")
    return value

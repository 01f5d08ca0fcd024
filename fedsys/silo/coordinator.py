"""The silo coordinator: a gRPC server that sites dial, and the runner of jobs on them.

Sites connect with ``Connect`` (one bidirectional stream each, authenticated by token;
the token's name is the site's name). The coordinator drives a
:class:`~fedsys.silo.jobrun.JobRun` with what arrives on those streams and turns its
actions into messages: ``Assign`` (a batch of tasks), ``InputPart`` (a pushed input),
``Reclaim``. Large outputs arrive on ``PutOutput``; their progress feeds merges that
stream (Sol), whose blocks go down as ``InputPart`` messages without a checksum and then
one that seals them. Baseline sites pull inputs with ``FetchInput``. The coordinator
pings every site to measure its RTT (which sets the pipelining degree) and to notice a
silent one.
Merges run in a worker thread (:mod:`~fedsys.silo.merge_worker`); their outputs go back
to the run on the loop.

Several jobs run at once over the same streams, each an
:class:`~fedsys.silo.active_job.ActiveJob` with its own run; every message about a job
names it, so the sites keep them apart and share their workers between them. When a
job ends (done, failed or cancelled) every site hears ``JobEnd`` and drops what it
holds of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import grpc

from fedsys.silo.active_job import ActiveJob, JobRefusedError
from fedsys.silo.job import Job
from fedsys.silo.jobrun import (
    Action,
    EngineMode,
    JobFailedError,
    JobRun,
    RunMerge,
    SiteView,
    TaskRecord,
)
from fedsys.silo.links import CoordinatorSettings, JobResult, SiteLink
from fedsys.silo.roles import RoleAuthInterceptor, check_disjoint
from fedsys.silo.servicer import CoordinatorServicer
from fedsys.silo.task_registry import Output
from fedsys.wire.auth import TokenStore, caller_name
from fedsys.wire.chunks import Reassembler
from fedsys.wire.protos import silo_pb2, silo_pb2_grpc
from fedsys.wire.transport import ServerSecurity, bind, make_server

__all__ = ["CoordinatorSettings", "JobRefusedError", "JobResult", "SiloCoordinator", "SiteLink"]

_LOGGER = logging.getLogger(__name__)


class SiloCoordinator:
    """Accepts site connections and runs jobs on the connected sites.

    Parameters
    ----------
    token_file
        The ``tokens.json`` naming the sites that may connect.
    security
        TLS settings of the server (TLS unless explicitly insecure).
    host, port
        Where to listen (port 0: any free port; :meth:`start` returns it).
    settings
        Limits and timers.
    roles
        Other roles served on the same port: ``"/package.Service/"`` -> the token file
        of its callers (e.g. the analysts of a standing federation). A call is checked
        against its service's file only, so no role can act as another.
    services
        Functions adding those services' servicers to the server, called at start.
    """

    def __init__(
        self,
        token_file: Path,
        security: ServerSecurity,
        host: str = "127.0.0.1",
        port: int = 0,
        settings: CoordinatorSettings | None = None,
        roles: Mapping[str, Path] | None = None,
        services: tuple[Any, ...] = (),
    ) -> None:
        self.token_file = token_file
        self.security = security
        self.host = host
        self.port = port
        self.settings = settings or CoordinatorSettings()
        self.roles = dict(roles or {})
        self.services = services
        self.views: dict[str, SiteView] = {}
        self._links: dict[str, SiteLink] = {}
        self._store: TokenStore | None = None
        self._server: grpc.aio.Server | None = None
        self._runs: dict[str, ActiveJob] = {}
        """The jobs in progress by job id (several at once, over the same site streams)."""
        self._joined: asyncio.Event | None = None

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> int:
        """Listen; return the port bound."""
        self._store = TokenStore(self.token_file)
        others = {prefix: TokenStore(path) for prefix, path in self.roles.items()}
        check_disjoint({"site": self._store, **{p.strip("/"): s for p, s in others.items()}})
        self._joined = asyncio.Event()
        server = make_server(
            [RoleAuthInterceptor(self._store, others)],
            max_message_bytes=self.settings.max_message_bytes,
            extra_options=[("grpc.http2.lookahead_bytes", self.settings.window_bytes)],
        )
        silo_pb2_grpc.add_CoordinatorServicer_to_server(CoordinatorServicer(self), server)
        for add_service in self.services:
            add_service(server)
        self.port = bind(server, self.host, self.port, self.security)
        await server.start()
        self._server = server
        return self.port

    async def stop(self) -> None:
        """Close every stream and stop the server."""
        for link in self._links.values():
            link.open = False
            link.outbox.put_nowait(None)
        if self._server is not None:
            await self._server.stop(grace=1.0)

    def job_records(self) -> list[TaskRecord]:
        """Task outputs the running jobs accepted so far (empty between jobs)."""
        return [record for active in self._runs.values() for record in active.run.records]

    def live_sites(self) -> list[SiteView]:
        """Connected sites."""
        return [view for view in self.views.values() if view.alive]

    async def wait_for_sites(self, count: int, timeout_s: float) -> list[SiteView]:
        """Wait until ``count`` sites are connected and have an RTT measurement.

        Raises
        ------
        TimeoutError
            If they do not all connect in time (the message names who did).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            live = [v for v in self.live_sites() if v.rtt_s is not None]
            if len(live) >= count:
                return live
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                names = sorted(v.name for v in self.live_sites())
                raise TimeoutError(
                    f"{len(names)} of {count} sites connected within {timeout_s:.0f} s: {names}"
                )
            assert self._joined is not None
            self._joined.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._joined.wait(), timeout=min(remaining, 0.2))

    # ------------------------------------------------------------ jobs

    @property
    def busy(self) -> bool:
        """Whether a job is running."""
        return bool(self._runs)

    async def run_job(self, job: Job, mode: EngineMode, timeout_s: float = 600.0,
                      analyst: str = "") -> JobResult:
        """Run ``job`` on the connected sites in ``mode`` and return its results.

        Several jobs may run at once: each has its own run (binding, dataflow, merges)
        and the sites share their workers between them. ``analyst`` (who submitted the
        job) goes to the sites with the job's mode: their rules, budgets and audit logs
        are kept per analyst. Cancelling the caller cancels the job: every site drops
        its queued tasks and inputs at once (``JobEnd``).

        Raises
        ------
        JobFailedError
            If a site is lost under ``fail``, a task raises, no site can run a task,
            or the job does not finish within ``timeout_s``;
            :class:`~fedsys.silo.active_job.JobRefusedError` when sites refused its tasks
            under their own rules.
        """
        run = JobRun(job, mode, self.views)
        active = self._runs[run.job_id] = ActiveJob(run, analyst)
        started = time.perf_counter()
        reason = "done"
        try:
            for link in self._links.values():
                link.send(active.mode_message())
            self._apply(active, run.start())
            try:
                await asyncio.wait_for(active.done.wait(), timeout=timeout_s)
            except TimeoutError:
                missing = [k for k in job.results if k not in run.done]
                raise JobFailedError(
                    f"job {run.job_id!r} did not finish within {timeout_s:.0f} s "
                    f"(waiting for {missing[:3]})"
                ) from None
            if active.failure is not None:
                raise active.error()
        except BaseException as exc:
            reason = "cancelled" if isinstance(exc, asyncio.CancelledError) else "failed"
            raise
        finally:
            del self._runs[run.job_id]
            active.release()
            for link in self._links.values():  # the sites drop its tasks and inputs now
                link.send(active.end_message(reason))
        stats = dict(run.stats, assign_messages=active.assign_messages)
        outputs = {key: run.outputs[key] for key in job.results}
        return JobResult(run.job_id, outputs, time.perf_counter() - started, stats, run.records)

    def running_jobs(self) -> list[str]:
        """Ids of the jobs in progress."""
        return list(self._runs)

    def cancel(self, reason: str, job_id: str | None = None) -> bool:
        """End running job ``job_id`` (every job: ``None``) with ``reason``; the sites
        drop its queued tasks (a task already computing finishes and its output is not
        sent). ``False`` when no such job runs."""
        targets = [a for a in self._runs.values() if job_id in (None, a.job_id)]
        for active in targets:
            active.fail(reason)
        return bool(targets)

    def _handle(self, active: ActiveJob, event: Any) -> None:
        """Run one engine event of ``active`` (a callable returning actions) and apply
        its actions; nothing for a job that is over."""
        if self._runs.get(active.job_id) is not active:
            return
        try:
            self._apply(active, event(active.run))
        except JobFailedError as exc:
            active.fail(str(exc))

    def _apply(self, active: ActiveJob, actions: Iterable[Action]) -> None:
        messages, merges = active.messages(actions)
        for site, message in messages:
            self._send(site, message)
        for action in merges:
            self._start_merge(active, action)
        if active.run.complete:
            active.done.set()

    def _start_merge(self, active: ActiveJob, action: RunMerge) -> None:
        """Compute a merge off the loop; its output goes back to its job (if still on)."""

        def merged(output: Output) -> None:
            self._handle(active, lambda r: r.on_merged(action.key, output))

        def failed(exc: Exception) -> None:
            if self._runs.get(active.job_id) is active:
                active.fail(f"merge {action.key!r} failed: {type(exc).__name__}: {exc}")

        active.merge_worker.start(action, merged, failed)

    def _send(self, site: str, message: silo_pb2.CoordinatorMessage) -> None:
        link = self._links.get(site)
        if link is not None:
            link.send(message)

    # ------------------------------------------------------------ site events

    def register(self, site: str, hello: silo_pb2.Hello) -> SiteLink:
        """A site introduced itself; a previous stream of the same site is dropped."""
        old = self._links.get(site)
        if old is not None and old.open:
            self.lose(old, "reconnected")
        if hello.workers < 1:
            raise ValueError("a site must offer at least one worker")
        view = SiteView(site, int(hello.workers), tuple(hello.datasets), frozenset(hello.tasks))
        link = SiteLink(view)
        self.views[site] = view
        self._links[site] = link
        _LOGGER.info("site connected", extra={"site": site, "workers": view.workers,
                                              "datasets": list(view.datasets)})
        for active in list(self._runs.values()):
            link.send(active.mode_message())
            self._handle(active, lambda r: r.schedule())
        return link

    def lose(self, link: SiteLink, reason: str) -> None:
        """A site's stream ended: its tasks are handled per the job's failure policy."""
        if not link.open:
            return
        link.open = False
        link.outbox.put_nowait(None)
        link.view.alive = False
        _LOGGER.warning("site lost", extra={"site": link.view.name, "reason": reason})
        if self._links.get(link.view.name) is link:
            for active in list(self._runs.values()):
                self._handle(active, lambda r: r.on_site_lost(link.view.name))

    def on_message(self, link: SiteLink, message: silo_pb2.SiteMessage) -> None:
        """Dispatch one message from a site's stream."""
        link.last_heard = time.monotonic()
        kind = message.WhichOneof("kind")
        site = link.view.name
        if kind == "pong":
            link.view.observe_rtt(time.monotonic() - message.pong.coordinator_time_s)
            if self._joined is not None:
                self._joined.set()
            return
        if kind == "request" and (active := self._runs.get(message.request.job_id)):
            count = int(message.request.count)
            self._handle(active, lambda r: r.on_request(site, count))
        elif kind == "reclaimed" and (active := self._runs.get(message.reclaimed.job_id)):
            ids = list(message.reclaimed.task_ids)
            self._handle(active, lambda r: r.on_reclaimed(site, ids))
        elif kind == "done" and (active := self._runs.get(message.done.job_id)):
            self._on_done(active, site, message.done)

    def _on_done(self, active: ActiveJob, site: str, done: silo_pb2.TaskDone) -> None:
        if done.refused:  # the site's own rules: the job fails naming the site and reason
            active.refusals.append((site, done.refused))
            reason = f"refused by the site's rules: {done.refused}"
            self._handle(active, lambda r: r.on_task_failed(site, done.task_id, reason))
            return
        if done.error:
            self._handle(active, lambda r: r.on_task_failed(site, done.task_id, done.error))
            return
        if not done.inline:
            return
        output = Output.from_wire(bytes(done.payload), done.meta_json)
        record = TaskRecord(done.task_id, site, int(done.attempt), done.start_s, done.end_s,
                            time.time(), len(done.payload), None, int(done.worker_pid))
        self._handle(active, lambda r: r.on_output(site, done.task_id, output, record))

    def accept_output(self, site: str, header: silo_pb2.OutputHeader, payload: bytes,
                      sha256: str = "") -> bool:
        """An output that arrived on ``PutOutput`` (``sha256``: its verified checksum);
        ``False`` if it was not counted."""
        active = self._runs.get(header.job_id)
        if active is None:
            return False
        run = active.run
        output = Output.from_wire(payload, header.meta_json)
        if sha256 and header.task_id not in run.done:  # a counted output's pushes reuse it
            active.merge_worker.digests[header.task_id] = sha256
        record = TaskRecord(header.task_id, site, int(header.attempt), header.start_s,
                            header.end_s, time.time(), len(payload), header.send_start_s,
                            int(header.worker_pid))
        before = len(run.records)
        self._handle(active, lambda r: r.on_output(site, header.task_id, output, record))
        return len(run.records) > before

    def output_progress(self, site: str, header: silo_pb2.OutputHeader,
                        assembler: Reassembler) -> None:
        """More of an output arrived on ``PutOutput``: merges that stream may go on."""
        active = self._runs.get(header.job_id)
        buffer = assembler.buffer()
        if active is None or buffer is None or not active.run.streaming:
            return
        try:
            meta = json.loads(header.meta_json) if header.meta_json else {}
        except ValueError:
            return  # accept_output refuses it once complete
        received = assembler.received_bytes
        self._handle(active, lambda r: r.on_progress(site, header.task_id, int(header.attempt),
                                                     meta, buffer, received))

    def input_parts(self, site: str, job_id: str, key: str) -> list[silo_pb2.InputPart] | None:
        """Output ``key`` in parts if ``site`` has a bound task consuming it (baseline pulls)."""
        active = self._runs.get(job_id)
        if active is None or not active.run.pending_inputs(site, key):
            return None
        if key not in active.run.outputs:
            return None
        return active.parts(key)

    async def ping_loop(self, link: SiteLink) -> None:
        """Ping a site until its stream closes; drop it when silent too long."""
        while link.open:
            link.send(silo_pb2.CoordinatorMessage(
                ping=silo_pb2.Ping(coordinator_time_s=time.monotonic())))
            if time.monotonic() - link.last_heard > self.settings.site_timeout_s:
                self.lose(link, f"silent for {self.settings.site_timeout_s:.0f} s")
                return
            await asyncio.sleep(self.settings.ping_interval_s)

    def caller(self, context: grpc.aio.ServicerContext) -> str:
        """The authenticated site name of a call."""
        assert self._store is not None
        return caller_name(self._store, context)

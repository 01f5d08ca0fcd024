"""The site manager: dials the coordinator, runs bound tasks on local data, sends outputs.

One manager per site. It holds one ``Connect`` stream to the coordinator and a pool of
compute worker processes (:mod:`fedsys.silo.worker`). It may hold several jobs at once
(keyed by job id: every message about a job names it). Tasks bound to the site wait in
their job's FIFO until their inputs are there (pushed by the coordinator, or pulled in
baseline mode) and a worker is free; a free worker goes to the job whose analyst holds
the fewest workers (fair share, :mod:`fedsys.silo.site_share`). A job's end
(``JobEnd``: done, failed or cancelled) drops its queued tasks and inputs at once. The
data never leaves the site, only outputs do.

Outputs up to the job's threshold ride inline on the stream. Larger ones go to
communication workers that upload them on ``PutOutput`` while compute goes on
(decoupled); in baseline mode the compute worker is held until the upload is
acknowledged (coupled), and the site asks for its next task only then (late binding).

Before a task runs, the site's gate (:mod:`fedsys.silo.gate`) checks it against the
site's own rules (``site.yaml``) and may refuse it; a refusal is reported in
``TaskDone.refused``. A site without rules runs every task (trusted, local use only).

A job's state at the site (its queued tasks, their inputs) is a
:class:`~fedsys.silo.site_job.SiteJob`; uploads and input pulls are
:class:`~fedsys.silo.site_transfer.SiteTransfers`'.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import grpc

from fedsys.silo.gate import SiteGate, TaskRequest, Verdict
from fedsys.silo.site_job import SiteJob, output_header, task_done
from fedsys.silo.site_share import next_job
from fedsys.silo.site_transfer import SiteTransfers
from fedsys.silo.task_registry import load_task_modules
from fedsys.silo.worker import WorkResult, make_pool, run_task
from fedsys.wire.auth import bearer_metadata
from fedsys.wire.chunks import PayloadError
from fedsys.wire.errors import error_text
from fedsys.wire.protos import silo_pb2, silo_pb2_grpc
from fedsys.wire.reconnect import keep_connected
from fedsys.wire.transport import (
    DEFAULT_MAX_MESSAGE_BYTES,
    Backoff,
    ChannelSecurity,
    open_channel,
)

_LOGGER = logging.getLogger(__name__)
_REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
# Each session's channel dials at once: a subchannel shared across channels would keep
# gRPC's own backoff (growing to 2 min) behind the site's, long after a cut has healed.
_DIAL_FRESH = (("grpc.use_local_subchannel_pool", 1),)


@dataclass(frozen=True)
class SiteSettings:
    """How a site manager works.

    Parameters
    ----------
    workers
        Compute worker processes.
    comm_workers
        Communication workers sending large outputs (decoupled mode).
    task_modules
        Modules to import that register tasks (besides the built-in ones).
    max_message_bytes
        Largest gRPC message.
    max_input_bytes
        Largest input the site accepts.
    coordinator_timeout_s
        Reconnect when the coordinator has said nothing (not even a ping) this long.
    transfer_timeout_s
        Deadline of one output upload or input download.
    backoff
        Reconnection backoff (default: no limit; only a refused token stops a site).
    upload_chunk_bytes
        Chunk size of output uploads. A merge that streams (Sol) can use an upload's
        bytes one chunk at a time, so a small chunk keeps the next round's model close
        behind the uploads (64 KiB: 26 ms at 20 Mbit/s).
    """

    workers: int = 2
    comm_workers: int = 2
    task_modules: tuple[str, ...] = ()
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_input_bytes: int = 512 * 1024 * 1024
    coordinator_timeout_s: float = 20.0
    transfer_timeout_s: float = 300.0
    backoff: Backoff = field(default_factory=lambda: Backoff(0.2, 5.0, max_attempts=None))
    upload_chunk_bytes: int = 64 * 1024


class SiteManager:
    """Runs a site: connect, execute bound tasks, send outputs, reconnect on failure.

    Parameters
    ----------
    coordinator
        ``host:port`` of the coordinator (or of the WAN shaper in front of it).
    token
        The site's bearer token (its name on the coordinator).
    security
        TLS settings of the channel.
    datasets
        Local datasets by name (paths on this site).
    name
        The site's name as its tasks see it (the coordinator knows it by its token).
    settings
        Workers and limits.
    gate
        The site's rules, checked before every task (``None``: none, run every task).
    """

    def __init__(
        self,
        coordinator: str,
        token: str,
        security: ChannelSecurity,
        datasets: Mapping[str, str],
        name: str = "site",
        settings: SiteSettings | None = None,
        gate: SiteGate | None = None,
    ) -> None:
        self.coordinator = coordinator
        self.token = token
        self.security = security
        self.datasets = dict(datasets)
        self.settings = settings or SiteSettings()
        self.name = name
        self.gate = gate or SiteGate(None)
        self._pool: ProcessPoolExecutor | None = None
        self._jobs: dict[str, SiteJob] = {}
        self._served = 0
        self._free = self.settings.workers
        self._wake = asyncio.Event()
        self._outbox: asyncio.Queue[silo_pb2.SiteMessage | None] = asyncio.Queue()
        self._comm: asyncio.Queue[tuple[silo_pb2.OutputHeader, bytes]] = asyncio.Queue()
        self._stub: silo_pb2_grpc.CoordinatorStub | None = None
        self._transfers: SiteTransfers | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Serve until ``stop`` is set, reconnecting with backoff when the stream breaks.

        Raises
        ------
        ConnectionError
            When the coordinator refuses the site's token, or the backoff gives up.
        """
        stop = stop or asyncio.Event()
        task_names = load_task_modules(self.settings.task_modules)
        self._pool = make_pool(self.settings.workers, self.name, self.datasets,
                               self.settings.task_modules)
        await self._warm_up()
        try:
            await keep_connected(
                lambda connected: self._session(task_names, stop, connected),
                backoff=self.settings.backoff,
                rng=random.Random(),
                target=f"the coordinator at {self.coordinator}",
                fatal=self._refusal,
                stop=stop,
                logger=_LOGGER,
            )
        finally:
            for task in list(self._tasks):
                task.cancel()
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _refusal(self, exc: BaseException) -> BaseException | None:
        """A refused token is fatal (dialling again cannot fix it); anything else retries."""
        if isinstance(exc, grpc.aio.AioRpcError) and exc.code() in _REFUSED:
            return ConnectionError(f"the coordinator at {self.coordinator} refused this "
                                   f"site: {exc.details()}")
        return None

    async def _warm_up(self) -> None:
        """Start every worker process now, not at the first task."""
        loop = asyncio.get_running_loop()
        assert self._pool is not None
        await asyncio.gather(*(
            loop.run_in_executor(self._pool, time.sleep, 0.2)
            for _ in range(self.settings.workers)
        ))

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _session(self, task_names: Sequence[str], stop: asyncio.Event,
                       connected: Callable[[], None]) -> None:
        """One connection: hello, then serve the stream until it ends (or ``stop``).

        ``connected`` is called at each message from the coordinator: a site that got
        through starts its reconnection count afresh.
        """
        self._jobs = {}  # (workers busy with a lost session's tasks stay busy)
        self._outbox = asyncio.Queue()
        async with open_channel(self.coordinator, self.security,
                                self.settings.max_message_bytes, _DIAL_FRESH) as channel:
            self._stub = silo_pb2_grpc.CoordinatorStub(channel)
            self._transfers = SiteTransfers(
                self._stub, self.token, self.settings.transfer_timeout_s,
                self.settings.max_input_bytes, self.settings.upload_chunk_bytes)
            hello = silo_pb2.Hello(workers=self.settings.workers,
                                   datasets=sorted(self.datasets), tasks=list(task_names))
            self._outbox.put_nowait(silo_pb2.SiteMessage(hello=hello))
            call = self._stub.Connect(self._outgoing(), metadata=bearer_metadata(self.token))
            workers = [asyncio.create_task(self._dispatch())]
            workers += [asyncio.create_task(self._comm_worker())
                        for _ in range(self.settings.comm_workers)]
            stopper = asyncio.create_task(stop.wait())
            try:
                while not stop.is_set():
                    read = asyncio.ensure_future(call.read())
                    finished, _ = await asyncio.wait(
                        {read, stopper}, timeout=self.settings.coordinator_timeout_s,
                        return_when=asyncio.FIRST_COMPLETED)
                    if read not in finished:
                        read.cancel()
                        if stop.is_set():
                            break
                        raise TimeoutError("the coordinator went silent")
                    message = read.result()
                    if message is grpc.aio.EOF:
                        raise ConnectionError("the coordinator closed the stream")
                    connected()
                    self._on_message(message)
            finally:
                stopper.cancel()
                self._outbox.put_nowait(None)
                for worker in workers:
                    worker.cancel()
                call.cancel()

    async def _outgoing(self) -> AsyncIterator[silo_pb2.SiteMessage]:
        outbox = self._outbox
        while (message := await outbox.get()) is not None:
            yield message

    def _send(self, message: silo_pb2.SiteMessage) -> None:
        self._outbox.put_nowait(message)

    # ------------------------------------------------------------ messages

    def _on_message(self, message: silo_pb2.CoordinatorMessage) -> None:
        kind = message.WhichOneof("kind")
        if kind == "ping":
            self._send(silo_pb2.SiteMessage(
                pong=silo_pb2.Pong(coordinator_time_s=message.ping.coordinator_time_s)))
        elif kind == "welcome":
            _LOGGER.info("connected", extra={"coordinator": self.coordinator,
                                             "site": message.welcome.site})
        elif kind == "mode":
            self._start_job(message.mode)
        elif kind == "end":
            self._end_job(message.end.job_id, message.end.reason)
        elif kind == "assign":
            for task in message.assign.tasks:
                job = self._jobs.get(task.job_id)
                if job is not None:
                    job.pending.append(task)
                    job.asked = max(0, job.asked - 1)
            self._wake.set()
        elif kind == "input" and (job := self._jobs.get(message.input.job_id)):
            self._on_input(job, message.input)
        elif kind == "evict" and (job := self._jobs.get(message.evict.job_id)):
            job.evict(message.evict.keys)  # the coordinator knows no task needs them again
        elif kind == "reclaim" and (job := self._jobs.get(message.reclaim.job_id)):
            given = job.reclaim(message.reclaim.task_ids)
            self._send(silo_pb2.SiteMessage(
                reclaimed=silo_pb2.Reclaimed(task_ids=given, job_id=job.job_id)))

    def _start_job(self, mode: silo_pb2.JobMode) -> None:
        """A job starts, beside the others this site holds: its tasks get a fair share
        of the workers (:func:`~fedsys.silo.site_share.next_job`)."""
        if mode.job_id in self._jobs:
            return
        job = self._jobs[mode.job_id] = SiteJob.from_mode(mode)  # never served: first in ties
        self._top_up(job)

    def _end_job(self, job_id: str, reason: str) -> None:
        """A job is over: its queued tasks and inputs go at once (its running ones finish,
        and their outputs are not sent)."""
        job = self._jobs.pop(job_id, None)
        if job is None:
            return
        dropped = len(job.pending)
        job.end()
        _LOGGER.info("job ended", extra={"job_id": job_id, "reason": reason,
                                         "dropped_tasks": dropped, "running_tasks": job.running})
        self._wake.set()

    def _top_up(self, job: SiteJob) -> None:
        """Late binding: ask for a task per free worker, up to the workers in all.

        A job that holds nothing here asks for one task even when other jobs hold every
        worker, so it takes its share of the next worker that frees. With one job this
        is plain late binding: the free workers at its start, then one per freed worker.
        """
        if not job.late_binding or job.ended:
            return
        holds = job.holds()
        count = min(self.settings.workers - holds, max(self._free, 1 if holds == 0 else 0))
        if count > 0:
            job.asked += count
            self._request(job, count)

    def _request(self, job: SiteJob, count: int) -> None:
        self._send(silo_pb2.SiteMessage(
            request=silo_pb2.TaskRequest(count=count, job_id=job.job_id)))

    def _on_input(self, job: SiteJob, part: silo_pb2.InputPart) -> None:
        """Collect a pushed input; streamed parts wait for their seal to be checked."""
        ready, refused = job.on_input(part, self.settings.max_input_bytes)
        if refused is not None:
            self._refuse_input(job, part.key, refused)
        elif ready:
            self._wake.set()

    def _refuse_input(self, job: SiteJob, key: str, reason: str) -> None:
        """A pushed input failed its checks: the tasks waiting for it pull it instead.

        The pull fetches the coordinator's whole copy (a corrupted stream heals); one
        that fails again fails the task, which the coordinator re-runs or reports, so
        the job never waits for an input that will not come.
        """
        _LOGGER.error("pushed input refused; its tasks will fetch it whole",
                      extra={"key": key, "reason": reason})
        job.refuse(key)
        self._wake.set()

    # ------------------------------------------------------------ execution

    def _runnable(self) -> tuple[silo_pb2.TaskAssignment, SiteJob] | None:
        """The next task to start and its job (fair share between jobs), if any may."""
        job = next_job(self._jobs.values(), self._free)
        task = job.runnable() if job is not None else None
        if job is None or task is None:
            return None
        self._served += 1
        job.served = self._served
        return task, job

    async def _dispatch(self) -> None:
        """Start runnable tasks whenever a worker is free (no round trip needed).

        Under early binding one more task than there are workers goes to the pool, so a
        worker that finishes takes the next task from the pool's queue at once instead of
        idling while this event loop hears of it and hands over the next one (on a busy
        machine that hand-over costs more than a short task). Late binding keeps to one
        task per free worker: it asks for work only when a worker is free. Between the
        jobs the site holds, each free worker goes to the job whose analyst, then job,
        holds the fewest workers (:func:`~fedsys.silo.site_share.next_job`).
        """
        while True:
            await self._wake.wait()
            self._wake.clear()
            while (picked := self._runnable()) is not None:
                task, job = picked
                self._free -= 1
                job.running += 1
                self._spawn(self._execute(task, job))

    def _release(self, job: SiteJob) -> None:
        """A worker is free again: late-binding jobs ask for tasks to fill it.

        The task may belong to a job that ended: a coupled upload holds its worker until
        the acknowledgement, which can arrive after the next job's mode message (which
        only asked for the workers free at that moment), so the freed worker asks now.
        """
        self._free += 1
        job.running -= 1
        for live in list(self._jobs.values()):
            self._top_up(live)
        self._wake.set()

    async def _execute(self, task: silo_pb2.TaskAssignment, job: SiteJob) -> None:
        try:
            params = json.loads(task.params_json) if task.params_json else {}
            request = TaskRequest(job.analyst, job.job_id, task.task_id, task.task,
                                  task.dataset, params)
            if job.ended:
                return  # cancelled while it waited for a worker: never admitted, never run
            verdict = await self._admit(request)
            if verdict.refused:
                self._send(silo_pb2.SiteMessage(done=silo_pb2.TaskDone(
                    task_id=task.task_id, attempt=task.attempt, job_id=job.job_id,
                    refused=verdict.refused,
                    error=f"refused by the site's rules: {verdict.refused}")))
                return
            inputs = [await self._input(job, key) for key in task.inputs]
            loop = asyncio.get_running_loop()
            result: WorkResult = await loop.run_in_executor(
                self._pool, run_task, task.task, task.task_id, task.dataset,
                verdict.params, inputs
            )
            small = len(result.payload) <= job.threshold_bytes or bool(result.error)
            if small and not job.ended:
                self._send(silo_pb2.SiteMessage(done=task_done(task, result, job.job_id)))
            if self.gate.rules is not None:  # audited off the loop, the output already sent
                self._spawn(asyncio.to_thread(self.gate.finished, request, verdict,
                                              result.error))
            header = output_header(task, result, job.job_id)
            if job.ended:
                pass  # the job is over: the coordinator would drop its output
            elif not small and job.coupled_output:
                await self._upload(header, result.payload)
            elif not small:
                self._comm.put_nowait((header, result.payload))
        except (grpc.aio.AioRpcError, TimeoutError, PayloadError) as exc:
            _LOGGER.warning("task lost its transfer",
                            extra={"task_id": task.task_id, "reason": error_text(exc)})
            self._report_failure(task.task_id, task.attempt, job.job_id,
                                 f"transfer failed: {error_text(exc)}")
        except Exception as exc:  # e.g. a worker process died: the coordinator must know
            _LOGGER.exception("task could not run", extra={"task_id": task.task_id})
            self._report_failure(task.task_id, task.attempt, job.job_id,
                                 f"{type(exc).__name__}: {exc}")
        finally:
            self._release(job)

    async def _admit(self, request: TaskRequest) -> Verdict:
        """The gate's verdict; off the event loop when rules mean file locks and writes."""
        if self.gate.rules is None:
            return self.gate.admit(request)
        return await asyncio.to_thread(self.gate.admit, request)

    def _report_failure(self, task_id: str, attempt: int, job_id: str, error: str) -> None:
        self._send(silo_pb2.SiteMessage(done=silo_pb2.TaskDone(
            task_id=task_id, attempt=attempt, job_id=job_id, error=error)))

    async def _input(self, job: SiteJob, key: str) -> tuple[bytes, str]:
        """An input: pushed already, or pulled from the coordinator (baseline)."""
        if key in job.inputs:
            return job.inputs[key]
        assert self._transfers is not None
        job.inputs[key] = await self._transfers.fetch_input(job.job_id, key)
        return job.inputs[key]

    async def _comm_worker(self) -> None:
        """Send large outputs while the compute workers go on (decoupled mode)."""
        while True:
            header, payload = await self._comm.get()
            if header.job_id not in self._jobs:
                continue  # its job ended (cancelled): nobody wants the output any more
            try:
                await self._upload(header, payload)
            except (grpc.aio.AioRpcError, TimeoutError) as exc:
                # The coordinator must hear of it, or the job waits for this output until
                # its timeout (a report about a task re-bound elsewhere meanwhile is ignored).
                _LOGGER.warning("output upload failed",
                                extra={"task_id": header.task_id, "reason": error_text(exc)})
                self._report_failure(header.task_id, header.attempt, header.job_id,
                                     f"output upload failed: {error_text(exc)}")

    async def _upload(self, header: silo_pb2.OutputHeader, payload: bytes) -> bool:
        assert self._transfers is not None
        return await self._transfers.upload(header, payload)

"""A standing federation: the coordinator that sites join once and analysts submit to.

:class:`StandingCoordinator` wraps a :class:`~fedsys.silo.coordinator.SiloCoordinator`
(sites dial its ``Coordinator`` service, with site tokens) and adds the analysts'
``Federation`` service on the same port (with analyst tokens: neither role can act as
the other). Accepted jobs are persisted (:class:`~fedsys.federation.store.JobStore`)
before the analyst hears back, so a restart loses none: queued and running jobs are
queued again when the coordinator comes back. Up to ``max_active_jobs`` jobs are in
progress at once; the next one to start is the oldest of the analyst with the fewest
jobs in progress. Their silo jobs run side by side on the sites, up to
``concurrent_silo_jobs`` at once, admitted fairly between analysts by a
:class:`~fedsys.federation.gate.FairGate`; each site shares its workers between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsys.analytics.ledger import PrivacyLedger
from fedsys.config.loader import load_config_text
from fedsys.federation.gate import AnalystView, FairGate, SiteRefusedError
from fedsys.federation.queries import check_query, run_query
from fedsys.federation.store import ACTIVE, FINISHED, JobRecord, JobStore
from fedsys.federation.training import ConfigTraining, mode_of
from fedsys.silo.coordinator import CoordinatorSettings, SiloCoordinator
from fedsys.wire.protos import federation_pb2_grpc
from fedsys.wire.transport import ServerSecurity

__all__ = ["ANALYST_SERVICE", "FederationSettings", "StandingCoordinator"]

_LOGGER = logging.getLogger(__name__)

ANALYST_SERVICE = "/fedsys.federation.Federation/"
"""Method prefix of the analysts' service (checked against the analyst tokens)."""

POLICIES = ("wait", "fail")


@dataclass(frozen=True)
class FederationSettings:
    """How a standing coordinator serves its analysts.

    Parameters
    ----------
    max_active_jobs
        Jobs in progress at once.
    concurrent_silo_jobs
        Silo jobs running on the sites at once (a query is one or a few, a training
        round one): each site shares its workers between them, by analyst first; more
        wait for a slot, given to the analyst with the fewest running. 1: one at a time.
    job_timeout_s
        Deadline of each silo job (a query's, or one training round's).
    site_wait_s, retries
        Policy ``wait``: how long a job waits for a lost site to rejoin, how many times.
    budget_epsilon, budget_delta
        An optional extra limit: each analyst's privacy budget for DP queries on a
        ledger of this coordinator's own. ``None`` (the default): none; the sites are
        the authority on budgets and charge their own ledgers for their DP-only data.
    max_config_bytes
        Largest run config an analyst may submit.
    tables
        The sites' table catalog a query reads when it names none.
    """

    max_active_jobs: int = 8
    concurrent_silo_jobs: int = 4
    job_timeout_s: float = 600.0
    site_wait_s: float = 120.0
    retries: int = 3
    budget_epsilon: float | None = None
    budget_delta: float = 1e-5
    max_config_bytes: int = 1024 * 1024
    tables: str = "data"


class StandingCoordinator:
    """Jobs of analysts, queued, persisted and run on the sites of one coordinator.

    Parameters
    ----------
    state_dir
        Where jobs, results, run folders and ledgers are kept.
    analyst_tokens
        The analysts' ``tokens.json`` (separate from the sites').
    settings
        Queue and job settings.
    """

    def __init__(self, state_dir: Path, analyst_tokens: Path,
                 settings: FederationSettings | None = None) -> None:
        self.state_dir = state_dir
        self.analyst_tokens = analyst_tokens
        self.settings = settings or FederationSettings()
        self.store = JobStore(state_dir)
        self.coordinator: SiloCoordinator | None = None
        self.gate: FairGate | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._ended: dict[str, asyncio.Event] = {}
        self._stopping = False

    # ------------------------------------------------------------ lifecycle

    def build(self, site_tokens: Path, security: ServerSecurity, host: str = "127.0.0.1",
              port: int = 0, settings: CoordinatorSettings | None = None) -> SiloCoordinator:
        """The silo coordinator serving both roles (start it, then :meth:`begin`)."""
        from fedsys.federation.servicer import FederationServicer

        servicer = FederationServicer(self)
        self.coordinator = SiloCoordinator(
            site_tokens, security, host, port, settings,
            roles={ANALYST_SERVICE: self.analyst_tokens},
            services=(lambda server: federation_pb2_grpc.add_FederationServicer_to_server(
                servicer, server),))
        self.gate = FairGate(self.coordinator, self.settings.concurrent_silo_jobs)
        return self.coordinator

    async def begin(self) -> list[JobRecord]:
        """Load the persisted jobs and start the queued ones; the jobs requeued."""
        jobs = await asyncio.to_thread(self.store.load)
        requeued = [j for j in jobs if j.state == "queued"]
        if requeued:
            _LOGGER.info("jobs queued from before the restart",
                         extra={"jobs": [j.job_id for j in requeued]})
        self._kick()
        return requeued

    async def close(self) -> None:
        """Stop the jobs in progress, leaving them queued on disk for the next start."""
        self._stopping = True
        for task in list(self._tasks.values()):
            task.cancel()
        for task in list(self._tasks.values()):
            with contextlib.suppress(BaseException):
                await task

    # ------------------------------------------------------------ analysts' requests

    def submit_query(self, analyst: str, request: dict[str, Any]) -> JobRecord:
        """Check and accept a query (on disk before this returns).

        Raises
        ------
        ValueError, UnsupportedQueryError
            If the query cannot run as asked.
        """
        summary = check_query(request)
        _check_policy(request)
        return self._accept(analyst, "query", request, summary)

    def submit_training(self, analyst: str, config_yaml: str, policy: str = "") -> JobRecord:
        """Check and accept a training job from a run config's text.

        Raises
        ------
        ValueError, ConfigError
            If the config is too large or invalid.
        """
        if len(config_yaml.encode()) > self.settings.max_config_bytes:
            raise ValueError(f"the run config exceeds {self.settings.max_config_bytes} bytes")
        config = load_config_text(config_yaml, "the submitted run config")
        request = {"config_yaml": config_yaml, "on_site_failure": policy or "wait"}
        _check_policy(request)
        summary = (f"train {config.model.name} on {config.dataset.name} with "
                   f"{config.strategy.name} for {config.rounds} rounds")
        return self._accept(analyst, "training", request, summary)

    def job(self, analyst: str, job_id: str) -> JobRecord:
        """``analyst``'s job ``job_id``.

        Raises
        ------
        KeyError
            If there is no such job of this analyst (another's is not disclosed).
        """
        job = self.store.jobs.get(job_id)
        if job is None or job.analyst != analyst:
            raise KeyError(f"no job {job_id!r} of analyst {analyst!r}")
        return job

    def jobs(self, analyst: str | None) -> list[JobRecord]:
        """Every job (``None``) or one analyst's, oldest first."""
        return [j for j in self.store.ordered() if analyst is None or j.analyst == analyst]

    def position(self, job: JobRecord) -> int:
        """Jobs queued ahead of a queued job."""
        if job.state != "queued":
            return 0
        return sum(1 for j in self.store.jobs.values() if j.state == "queued" and j.seq < job.seq)

    def cancel(self, analyst: str, job_id: str) -> JobRecord:
        """Cancel a queued or running job; its tasks are freed at the sites."""
        job = self.job(analyst, job_id)
        if job.state in FINISHED:
            return job
        task = self._tasks.get(job_id)
        if task is not None:
            task.cancel()
        self.store.log(job_id, f"cancelled by {analyst}")
        job = self._end(job_id, "cancelled", error=f"cancelled by {analyst}")
        return job

    async def wait(self, job_id: str, wait_s: float) -> None:
        """Return when the job has ended, or after ``wait_s``."""
        job = self.store.jobs.get(job_id)
        if job is None or job.state in FINISHED or wait_s <= 0:
            return
        event = self._ended.setdefault(job_id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=wait_s)

    # ------------------------------------------------------------ running jobs

    def _accept(self, analyst: str, kind: str, request: dict[str, Any], summary: str
                ) -> JobRecord:
        job = self.store.add(analyst, kind, request, summary)
        _LOGGER.info("job accepted", extra={"job_id": job.job_id, "analyst": analyst,
                                            "kind": kind})
        self._kick()
        return job

    def _kick(self) -> None:
        """Start queued jobs while fewer than ``max_active_jobs`` run (fair share)."""
        if self._stopping or self.gate is None:
            return
        while len(self._tasks) < self.settings.max_active_jobs:
            queued = [j for j in self.store.ordered() if j.state == "queued"
                      and j.job_id not in self._tasks]
            if not queued:
                return
            active: dict[str, int] = {}
            for job_id in self._tasks:
                owner = self.store.jobs[job_id].analyst
                active[owner] = active.get(owner, 0) + 1
            job = min(queued, key=lambda j: (active.get(j.analyst, 0), j.seq))
            self._tasks[job.job_id] = asyncio.ensure_future(self._run(job))

    async def _run(self, job: JobRecord) -> None:
        job_id = job.job_id
        store = self.store
        job = store.update(job_id, state="running", started_s=time.time(),
                           attempts=job.attempts + 1)
        store.log(job_id, "started" if job.attempts == 1 else f"started again "
                  f"(attempt {job.attempts})")
        try:
            result = await self._execute(job)
        except asyncio.CancelledError:
            if not self._stopping and store.jobs[job_id].state not in FINISHED:
                self._end(job_id, "cancelled", error="cancelled")
            return
        except Exception as exc:  # the job failed: its analyst reads why
            reason = str(exc) or type(exc).__name__
            store.log(job_id, f"failed: {reason}")
            refused = ([f"site {site}: {why}" for site, why in exc.refusals]
                       if isinstance(exc, SiteRefusedError) else [])
            self._end(job_id, "failed", error=reason, refused=refused)
        else:
            await asyncio.to_thread(store.write_result, job_id, result)
            store.log(job_id, "done")
            self._end(job_id, "done")
        finally:
            self._tasks.pop(job_id, None)
            self._kick()

    def enrolled(self) -> list[str]:
        """The sites whose tokens are valid (those a job waits for at its start)."""
        assert self.coordinator is not None
        try:
            rows = json.loads(self.coordinator.token_file.read_text())["clients"]
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"cannot read the sites' tokens: {exc}") from None
        return sorted(r["name"] for r in rows if not r.get("revoked", False))

    async def _await_sites(self, job_id: str) -> None:
        """Wait until every enrolled site is connected (a site that restarted with the
        coordinator reconnects within seconds), or ``site_wait_s``; log who is missing."""
        assert self.coordinator is not None
        deadline = time.monotonic() + self.settings.site_wait_s
        while True:
            live = {v.name for v in self.coordinator.live_sites() if v.rtt_s is not None}
            missing = [name for name in self.enrolled() if name not in live]
            if not missing:
                return
            if time.monotonic() > deadline:
                self.store.log(job_id, f"starting without sites {missing} (not connected "
                               f"within {self.settings.site_wait_s:.0f} s)")
                return
            await asyncio.sleep(0.2)

    async def _execute(self, job: JobRecord) -> dict[str, Any]:
        assert self.gate is not None
        settings = self.settings
        await self._await_sites(job.job_id)
        request = job.request
        view = AnalystView(self.gate, job.analyst, job.job_id,
                           str(request.get("on_site_failure") or "wait"),
                           settings.site_wait_s, settings.retries,
                           lambda line: self.store.log(job.job_id, line))
        if job.kind == "query":
            ledger = None
            if settings.budget_epsilon is not None:  # an extra limit, off by default
                ledger = PrivacyLedger(self.state_dir / "ledgers" / f"{job.analyst}.json",
                                       settings.budget_epsilon, settings.budget_delta)
            request = {**request, "dataset": request.get("dataset") or settings.tables}
            return await run_query(view, request, ledger, settings.job_timeout_s)
        config = load_config_text(str(request["config_yaml"]), "the submitted run config")
        mode = mode_of(view.policy)
        training = ConfigTraining(
            config, self.store.run_folder(job.job_id),
            lambda silo_job: view.run_job(silo_job, mode, settings.job_timeout_s),
            view.site_names, view.round_sites, lambda line: self.store.log(job.job_id, line),
            lambda text: self._progress(job.job_id, text))
        summary = await training.run()
        return {"summary": summary}

    def _progress(self, job_id: str, text: str) -> None:
        if self.store.jobs[job_id].state in ACTIVE:
            self.store.update(job_id, progress=text)

    def _end(self, job_id: str, state: str, **changes: Any) -> JobRecord:
        job = self.store.update(job_id, state=state, finished_s=time.time(), **changes)
        self._ended.setdefault(job_id, asyncio.Event()).set()
        return job


def _check_policy(request: dict[str, Any]) -> None:
    policy = str(request.get("on_site_failure") or "wait")
    if policy not in POLICIES:
        raise ValueError(f"on_site_failure must be one of {POLICIES}, got {policy!r}")

"""The site's gate: every task is checked against the site's own rules before it runs.

The coordinator schedules; it is not trusted. Before a worker reads any row, the gate
asks: does this site run this kind of job? Then the task's own checker (registered by
its module, e.g. analytics plans the query itself) says which tables and columns the
task reads and what privacy it costs, or refuses it. A cost is charged to the site's
ledger (per analyst and in total, atomically) before the task may run. The task then
runs with the site's policy (suppression, clamps, noise) put into its parameters under
:data:`POLICY_KEY`, a key the gate always overwrites, so a coordinator cannot supply
its own. Every decision goes to the site's audit log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fedsys.silo.audit import AuditLog, AuditRecord
from fedsys.silo.site_ledger import BudgetRefusedError, SiteLedger
from fedsys.silo.site_rules import SiteRules
from fedsys.silo.task_registry import REGISTRY, TaskRegistry, checker

__all__ = [
    "POLICY_KEY",
    "Admission",
    "SiteGate",
    "TaskRefusedError",
    "TaskRequest",
    "Verdict",
    "check_model",
]

POLICY_KEY = "site_policy"
"""Parameter under which the gate hands a task the site's policy for it."""


class TaskRefusedError(ValueError):
    """The site's rules refuse a task; the message is the reason the analyst sees."""


@dataclass(frozen=True)
class TaskRequest:
    """A task as the gate sees it: who asked (from the job), what, on which dataset."""

    analyst: str
    job_id: str
    task_id: str
    task: str
    dataset: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Admission:
    """What a checker found a task reads and costs, and the parameters it runs with."""

    params: Mapping[str, Any]
    tables: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    epsilon: float = 0.0
    delta: float = 0.0


@dataclass(frozen=True)
class Verdict:
    """The gate's answer: run with ``params``, or ``refused`` with a reason."""

    params: Mapping[str, Any] = field(default_factory=dict)
    refused: str = ""
    admission: Admission | None = None


class SiteGate:
    """Checks tasks against a site's rules, charges its ledger and audits every decision.

    Parameters
    ----------
    rules
        The site's rules; ``None``: a trusted-local site that runs every task.
    registry
        Where the task kinds and checkers are registered.
    """

    def __init__(self, rules: SiteRules | None, registry: TaskRegistry = REGISTRY) -> None:
        self.rules = rules
        self.registry = registry

    def admit(self, request: TaskRequest) -> Verdict:
        """Refuse ``request`` or admit it (charging its privacy cost first).

        Blocking (file lock, fsync): call it from a thread, not the event loop.
        """
        params = {k: v for k, v in request.params.items() if k != POLICY_KEY}
        rules = self.rules
        if rules is None:
            return Verdict(params)
        request = replace(request, params=params)
        try:
            admission = self._check(rules, request)
            if admission.epsilon > 0 or admission.delta > 0:
                self._charge(rules, request, admission)
        except (TaskRefusedError, BudgetRefusedError) as exc:
            self._audit(request, None, "refused", str(exc))
            return Verdict(refused=str(exc))
        except Exception as exc:  # fail closed: a task the site cannot check does not run
            reason = f"the site could not check the task ({type(exc).__name__}: {exc})"
            self._audit(request, None, "refused", reason)
            return Verdict(refused=reason)
        self._audit(request, admission, "run", "")
        return Verdict(admission.params, "", admission)

    def finished(self, request: TaskRequest, verdict: Verdict, error: str) -> None:
        """Audit how an admitted task ended (``error`` empty: it succeeded)."""
        if self.rules is not None and verdict.admission is not None:
            self._audit(request, verdict.admission, "failed" if error else "done", error)

    def _check(self, rules: SiteRules, request: TaskRequest) -> Admission:
        kind = self.registry.kind(request.task)
        if kind not in rules.accept:
            raise TaskRefusedError(
                f"this site does not run {kind} jobs (task {request.task}; "
                f"it accepts: {', '.join(rules.accept) or 'none'})"
            )
        check = self.registry.checker(request.task)
        if check is None:
            return Admission(request.params)
        admission = check(rules, request)
        if not isinstance(admission, Admission):
            raise TypeError(f"checker of {request.task} returned {type(admission).__name__}")
        return admission

    def _charge(self, rules: SiteRules, request: TaskRequest, admission: Admission) -> None:
        privacy = rules.privacy
        if privacy.max_query_epsilon is not None and (
            admission.epsilon > privacy.max_query_epsilon * (1 + 1e-9)
        ):
            raise TaskRefusedError(
                f"the task asks epsilon={admission.epsilon:g}, above this "
                f"site's largest per task ({privacy.max_query_epsilon:g})"
            )
        ledger = SiteLedger(
            Path(privacy.ledger),
            privacy.budget_epsilon,
            privacy.budget_delta,
            privacy.analyst_epsilon,
            privacy.analyst_delta,
        )
        ledger.charge(
            request.analyst,
            admission.epsilon,
            admission.delta,
            f"{request.job_id}/{request.task_id} {request.task}",
        )

    def _audit(
        self, request: TaskRequest, admission: Admission | None, decision: str, reason: str
    ) -> None:
        assert self.rules is not None
        AuditLog(Path(self.rules.audit_log)).append(
            AuditRecord(
                decision=decision,
                analyst=request.analyst,
                job_id=request.job_id,
                task_id=request.task_id,
                task=request.task,
                dataset=request.dataset,
                tables=admission.tables if admission else (),
                columns=admission.columns if admission else (),
                epsilon=admission.epsilon if admission else 0.0,
                delta=admission.delta if admission else 0.0,
                reason=reason,
            )
        )


def check_model(rules: SiteRules, spec: Mapping[str, Any]) -> None:
    """Refuse a model the site does not allow: a built-in name or a listed factory.

    ``spec`` holds ``kind`` or ``name`` (built-in) or ``factory`` (``pkg.mod:fn``).

    Raises
    ------
    TaskRefusedError
        If the model is not allowed here.
    """
    factory = spec.get("factory")
    if factory:
        if factory not in rules.training.factories:
            raise TaskRefusedError(
                f"model factory {factory!r} is not allowed at this site "
                f"(allowed: {', '.join(rules.training.factories) or 'none'})"
            )
        return
    name = str(spec.get("kind", spec.get("name", "mlp")))
    if name not in rules.training.models:
        raise TaskRefusedError(
            f"model {name!r} is not allowed at this site "
            f"(allowed: {', '.join(rules.training.models) or 'none'})"
        )


def check_training_dataset(rules: SiteRules, dataset: str) -> None:
    """Refuse training on a dataset the site's rules do not list for training.

    Raises
    ------
    TaskRefusedError
        If ``dataset`` is not one of ``training.datasets``.
    """
    if dataset not in rules.training.datasets:
        raise TaskRefusedError(f"dataset {dataset!r} is not exposed for training at this site")


@checker("silo.train")
@checker("silo.train_config")
def _check_train(rules: SiteRules, request: TaskRequest) -> Admission:
    """A training task: a dataset exposed for training, a model the site allows (a
    built-in ``kind``/``name``, or a listed ``factory``, as a run config's model section
    names them)."""
    check_training_dataset(rules, request.dataset)
    model = request.params.get("model")
    if not isinstance(model, Mapping):
        raise TaskRefusedError("a training task must name its model")
    check_model(rules, model)
    return Admission(request.params)

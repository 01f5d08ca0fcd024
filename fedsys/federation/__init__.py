"""A standing cross-silo federation: a long-running coordinator analysts submit jobs to.

Sites join a :class:`~fedsys.federation.service.StandingCoordinator` once and stay;
analysts, with credentials of their own, queue SQL queries and training jobs from run
configs (:class:`~fedsys.federation.client.Federation`, ``fedsys query --coordinator``,
``fedsys submit``, ``fedsys jobs``). Jobs are persisted, share the sites fairly between
analysts, and survive a restart of the coordinator or a lost site.
"""

from fedsys.federation.client import (
    Federation,
    FederationError,
    JobFailedError,
    JobRefusedError,
    QueryAnswer,
)

__all__ = ["Federation", "FederationError", "JobFailedError", "JobRefusedError", "QueryAnswer"]

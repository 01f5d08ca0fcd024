"""Starting a local Ray cluster on a busy machine: Ray's fixed 30 s wait for its node
can run out, so the backend starts the cluster again; other failures are not retried.

Ray's ``init`` and ``shutdown`` are stood in for by a recorder (starting real clusters
that time out would need a machine loaded on purpose); the real cluster is exercised
in test_ray_cluster.py.
"""

from __future__ import annotations

import pytest

from fedsys.sim.backends import RayBackend
from fedsys.sim.backends.ray_cluster import LOCAL_START_ATTEMPTS

TIMED_OUT = "The current node timed out during startup. This could happen because ..."


class SlowRay:
    """Fails ``init`` with ``errors`` in turn, then succeeds; records every call."""

    def __init__(self, *errors: str) -> None:
        self.errors = list(errors)
        self.calls: list[str] = []

    def init(self, **kwargs: object) -> None:
        self.calls.append("init")
        if self.errors:
            raise Exception(self.errors.pop(0))

    def shutdown(self) -> None:
        self.calls.append("shutdown")


def test_a_local_cluster_that_timed_out_starting_is_started_again() -> None:
    ray = SlowRay(TIMED_OUT, TIMED_OUT)
    RayBackend(workers=2).start(ray)
    assert ray.calls == ["init", "shutdown", "init", "shutdown", "init"]


def test_it_gives_up_after_the_last_attempt_with_ray_s_error() -> None:
    ray = SlowRay(*[TIMED_OUT] * LOCAL_START_ATTEMPTS)
    with pytest.raises(Exception, match="timed out during startup"):
        RayBackend(workers=2).start(ray)
    assert ray.calls.count("init") == LOCAL_START_ATTEMPTS


@pytest.mark.parametrize(
    ("backend", "error"),
    [
        (RayBackend(address="10.0.0.1:6379"), TIMED_OUT),  # a given cluster: its owner's
        (RayBackend(workers=2), "some other failure"),
    ],
)
def test_other_failures_and_given_clusters_are_not_retried(backend: RayBackend, error: str) -> None:
    ray = SlowRay(error)
    with pytest.raises(Exception, match=error[:20]):
        backend.start(ray)
    assert ray.calls == ["init"]

"""The suite runs on two xdist workers; a test that measures wall-clock time runs alone.

Real-process tests spend much of their time starting interpreters and waiting on
sockets, so two workers finish the suite far sooner on two cores. A test marked
``timing`` (a shaper's delay within 10 %, an overlap seen on a timeline) would measure
the other worker's load instead of the code, so it takes an exclusive lock that every
other test holds shared: nothing else runs while it does.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "timing: measures wall-clock time; no other test runs while it does"
    )


@pytest.fixture(autouse=True)
def _timing_isolation(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    # Workers' base folders share a parent: the lock file there is common to all of them.
    lock_path = tmp_path_factory.getbasetemp().parent / "fedsys-timing.lock"
    exclusive = request.node.get_closest_marker("timing") is not None
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(autouse=True)
def _fedsys_logger_isolation() -> Iterator[None]:
    """Each test starts with fedsys's logger as the last one left it and leaves it so.

    A command run in-process (``main([...])``) calls ``setup_logging``, which gives the
    ``fedsys`` logger its own handlers and stops propagation; without this, every later
    test in that worker would lose its ``caplog`` records.
    """
    import logging

    root = logging.getLogger("fedsys")
    saved = (list(root.handlers), root.level, root.propagate)
    yield
    for handler in root.handlers:
        if handler not in saved[0]:
            handler.close()
    root.handlers[:], root.level, root.propagate = saved

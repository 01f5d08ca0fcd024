"""Keep a long-running server's memory at what it uses, not at what it once touched.

Updates are large, short-lived buffers allocated and freed by several threads
(gRPC's, the aggregation worker's). glibc's malloc raises its mmap threshold after
such frees and serves later buffers from per-thread heap arenas, which then keep the
freed pages: resident memory ratchets up round after round. Fixing the threshold
makes every buffer above it an mmap that returns to the system when freed; the many
small buffers a TLS connection's transfers leave freed in the arenas (measured: about
a third of what a connection holds after a 4 MiB transfer) go back with
:func:`return_free_memory`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import resource
import time

_M_MMAP_THRESHOLD = -3
_LOGGER = logging.getLogger(__name__)


def release_large_buffers(threshold_bytes: int = 256 * 1024) -> bool:
    """Serve allocations above ``threshold_bytes`` by mmap (glibc only); whether it applied."""
    libc = _libc()
    try:
        applied = libc is not None and bool(libc.mallopt(_M_MMAP_THRESHOLD, int(threshold_bytes)))
    except AttributeError:
        applied = False
    if not applied:
        _LOGGER.info("mallopt unavailable: large buffers stay in malloc's arenas")
    return applied


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def return_free_memory() -> bool:
    """Give the heap's free pages back to the system (glibc ``malloc_trim``); whether it ran.

    Cheap next to a round (milliseconds), so the server calls it as transfers finish
    instead of letting freed transfer buffers pile up in the arenas.
    """
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return False
    trim(0)
    return True


class FreeMemoryPacer:
    """Calls :func:`return_free_memory` as transfers finish, at most every ``interval_s``."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self._last = 0.0

    def transfer_finished(self) -> None:
        """A model download or update upload ended: its buffers are free now."""
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            return_free_memory()


def current_rss_bytes() -> int:
    """This process's resident memory now (0 where ``/proc`` is not available)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()
    except OSError:
        return 0


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024

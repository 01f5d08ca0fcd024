"""Keep a long-running server's memory at what it uses, not at what it once touched.

Updates are large, short-lived buffers allocated and freed by several threads
(gRPC's, the aggregation worker's). glibc's malloc raises its mmap threshold after
such frees and serves later buffers from per-thread heap arenas, which then keep the
freed pages: resident memory ratchets up round after round. Fixing the threshold
makes every buffer above it an mmap that returns to the system when freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import resource

_M_MMAP_THRESHOLD = -3
_LOGGER = logging.getLogger(__name__)


def release_large_buffers(threshold_bytes: int = 256 * 1024) -> bool:
    """Serve allocations above ``threshold_bytes`` by mmap (glibc only); whether it applied."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        applied = bool(libc.mallopt(_M_MMAP_THRESHOLD, int(threshold_bytes)))
    except (OSError, AttributeError):
        applied = False
    if not applied:
        _LOGGER.info("mallopt unavailable: large buffers stay in malloc's arenas")
    return applied


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024

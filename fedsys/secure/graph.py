"""Who agrees keys with whom: the sparse random graph of SecAgg+.

Bell et al., "Secure Single-Server Aggregation with (Poly)Logarithmic Overhead",
CCS 2020 (https://eprint.iacr.org/2020/704): each client masks with and shares its
secrets among only ``k = O(log n)`` neighbours. As Flower's SecAgg+ does, the graph
is a Harary graph (a ring where each node links to its ``k/2`` nearest on either
side) laid over a uniformly random permutation drawn from the OS CSPRNG, so nobody
chooses their neighbours. ``k >= n - 1`` is the all-pairs protocol of Bonawitz et al.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence


def default_degree(num_clients: int) -> int:
    """Neighbours per client when unset: ``2 ceil(1.5 log2 n)``, at most ``n - 1``."""
    if num_clients <= 1:
        return 0
    return min(num_clients - 1, 2 * math.ceil(1.5 * math.log2(num_clients)))


def neighbour_graph(clients: Sequence[int], degree: int | None) -> dict[int, tuple[int, ...]]:
    """Each client's neighbours in a random ``degree``-regular graph (``None``: all pairs).

    Parameters
    ----------
    clients
        Distinct client ids of the round.
    degree
        Neighbours per client, rounded up to even; ``None`` or ``>= n - 1`` links
        every pair.

    Raises
    ------
    ValueError
        If ids repeat or the degree is negative.
    """
    ids = list(clients)
    n = len(ids)
    if len(set(ids)) != n:
        raise ValueError("client ids of a round must be distinct")
    if degree is not None and degree < 0:
        raise ValueError(f"graph degree must be >= 0, got {degree}")
    if degree is None or degree >= n - 1:
        return {c: tuple(sorted(set(ids) - {c})) for c in ids}
    half = max(1, math.ceil(degree / 2))
    if 2 * half >= n - 1:
        return {c: tuple(sorted(set(ids) - {c})) for c in ids}
    order = ids[:]
    for i in range(n - 1, 0, -1):  # Fisher-Yates with the CSPRNG
        j = secrets.randbelow(i + 1)
        order[i], order[j] = order[j], order[i]
    graph: dict[int, set[int]] = {c: set() for c in ids}
    for position, client in enumerate(order):
        for offset in range(1, half + 1):
            other = order[(position + offset) % n]
            graph[client].add(other)
            graph[other].add(client)
    return {c: tuple(sorted(peers)) for c, peers in graph.items()}

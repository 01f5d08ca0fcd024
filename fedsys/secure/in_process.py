"""Run a whole secure round in one process: the reference driver of the state machines.

Federated analytics sums integer vectors across sites with it, tests check the
protocol with it, and the benchmark times each side with it. A real deployment
runs the same :class:`SecAggClient` and :class:`SecAggServer` steps with a network
in between (``fedsys.deploy.secure_round``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from fedsys.secure.client import SecAggClient
from fedsys.secure.crypto import mask_dtype
from fedsys.secure.messages import SecureSum
from fedsys.secure.server import SecAggServer

Step = Literal["advertise", "share", "mask", "unmask"]
"""The step a client vanishes *before*: no keys, no shares, no input, no unmask reply."""

STEPS: tuple[Step, ...] = ("advertise", "share", "mask", "unmask")


@dataclass
class StepTimes:
    """Seconds spent by each side over a round (clients summed over all clients)."""

    client_s: float = 0.0
    server_s: float = 0.0
    client_bytes_up: int = 0
    client_bytes_down: int = 0
    per_client_s: dict[int, float] = field(default_factory=dict)


def secure_sum(
    inputs: Mapping[int, np.ndarray],
    *,
    bits: int = 32,
    threshold: float = 0.5,
    degree: int | None = None,
    dropouts: Mapping[int, Step] | None = None,
    times: StepTimes | None = None,
) -> SecureSum:
    """Sum integer vectors modulo 2^bits so that the aggregator sees only the sum.

    Parameters
    ----------
    inputs
        Client id -> vector of non-negative integers below 2^bits (all of one length;
        use :class:`~fedsys.secure.quantize.Quantizer` for real values).
    bits, threshold, degree
        As for :class:`SecAggServer` (``degree=None``: all pairs).
    dropouts
        Client id -> the step it vanishes before (for tests and what-if studies).
    times
        Filled with compute time and bytes per side, when given.

    Returns
    -------
    SecureSum
        The sum over the clients whose input counted, and who they are.

    Raises
    ------
    SecureAggregationError
        If too many clients drop out; nothing is revealed.
    """
    dropouts = dict(dropouts or {})
    ids = sorted(int(c) for c in inputs)
    length = len(next(iter(inputs.values())))
    clock = times if times is not None else StepTimes()
    server = SecAggServer(ids, length, threshold=threshold, degree=degree, bits=bits)
    setups = _timed(clock, None, server.setup)
    clients = {c: SecAggClient(setups[c]) for c in ids}

    def alive(client: int, step: Step) -> bool:
        gone = dropouts.get(client)
        return gone is None or STEPS.index(gone) > STEPS.index(step)

    for c in ids:
        if alive(c, "advertise"):
            advert = _timed(clock, c, clients[c].advertise)
            _timed(clock, None, server.receive_advert, advert)
    routed = _timed(clock, None, server.close_adverts)
    for c, adverts in routed.items():
        if alive(c, "share"):
            shares = _timed(clock, c, clients[c].share_keys, adverts)
            _timed(clock, None, server.receive_shares, c, shares)
    delivered = _timed(clock, None, server.close_shares)
    for c, shares in delivered.items():
        if alive(c, "mask"):
            _timed(clock, c, clients[c].receive_shares, shares)
            values = np.asarray(inputs[c], dtype=mask_dtype(bits))
            masked = _timed(clock, c, clients[c].mask, values)
            _timed(clock, None, server.receive_masked, masked)
    requests = _timed(clock, None, server.close_inputs)
    for c, request in requests.items():
        if alive(c, "unmask"):
            reply = _timed(clock, c, clients[c].unmask, request)
            _timed(clock, None, server.receive_unmask, reply)
    return _timed(clock, None, server.finish)


def _timed(clock: StepTimes, client: int | None, step, *args):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = step(*args)
    spent = time.perf_counter() - start
    if client is None:
        clock.server_s += spent
    else:
        clock.client_s += spent
        clock.per_client_s[client] = clock.per_client_s.get(client, 0.0) + spent
    return result

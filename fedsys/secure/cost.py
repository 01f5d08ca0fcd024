"""What SecAgg+ costs a round, so the simulator's clock charges it honestly.

The unit costs are measured on the real implementation by :func:`calibrate`
(``benchmarks/secagg.py`` runs it and prints the figures); :data:`MEASURED` holds the
constants it produced on the reference machine (2 x86 cores with AES-NI, nothing else
running; in the same run the protocol's measured compute was 0.5-1x this model's for a
client and 0.7-1.7x for the server, at 50-200 clients and 0.1-1M parameters). A round's
cost then follows from the protocol's structure: each client agrees ``2k`` keys,
shares two secrets among ``k + 1`` holders, expands ``k + 1`` masks of the update's
length and sends keys, ``k`` encrypted shares, the masked vector and ``k + 1`` revealed
shares; the server expands one self-mask per survivor and ``k`` pairwise masks per
dropout and recovers one secret per client. The extra message rounds (key relay,
share relay, unmasking) each cost a round trip.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import numpy as np

from fedsys.secure.crypto import KeyPair, agree, encrypt, expand_mask, mask_buffer
from fedsys.secure.field import recover_secret, split_secret
from fedsys.secure.graph import default_degree
from fedsys.secure.quantize import Quantizer

KEY_ADVERT_BYTES = 2 * 32 + 8
ENCRYPTED_SHARE_BYTES = 12 + 2 * 66 + 16 + 10
REVEALED_SHARE_BYTES = 66 + 6
EXTRA_ROUND_TRIPS = 3


@dataclass(frozen=True)
class UnitCosts:
    """Seconds per elementary step of the real implementation on one core."""

    mask_s_per_value: float
    """Expand one PRG value and add it into a vector."""
    quantize_s_per_value: float
    """Clip, scale and stochastically round one value."""
    agree_s: float
    """One X25519 agreement plus HKDF."""
    share_s_per_holder: float
    """Shamir-split two secrets for one more holder, and AES-GCM the pair."""
    recover_s: float
    """Recover one secret from its threshold of shares."""


MEASURED = UnitCosts(
    mask_s_per_value=9.743e-10,
    quantize_s_per_value=1.599e-08,
    agree_s=7.182e-05,
    share_s_per_holder=7.436e-06,
    recover_s=4.395e-05,
)
"""Produced by :func:`calibrate` on the reference machine (see ``benchmarks/secagg.py``)."""


@dataclass(frozen=True)
class SecureRoundCost:
    """What secure aggregation adds to one round, per client and at the server."""

    client_compute_s: float
    server_compute_s: float
    extra_bytes_up: int
    extra_bytes_down: int
    round_trips: int


@dataclass(frozen=True)
class SecureCostModel:
    """The cost of SecAgg+ rounds for the simulator's virtual clock.

    Parameters
    ----------
    degree
        Neighbours per client (``None``: ``default_degree(n)``).
    all_pairs
        Bonawitz et al.'s SecAgg (every pair of clients agrees keys).
    bits
        Masked integers modulo 2^bits.
    threshold
        Fraction of holders that recover a secret.
    dropout_fraction
        Share of the selected clients assumed to vanish after sharing keys (the server
        must then remove their pairwise masks).
    round_trip_s
        Latency of one extra message round (device to server and back).
    units
        Unit costs (default: :data:`MEASURED`).
    """

    degree: int | None = None
    all_pairs: bool = False
    bits: int = 32
    threshold: float = 0.5
    dropout_fraction: float = 0.1
    round_trip_s: float = 0.1
    units: UnitCosts = MEASURED

    def neighbours(self, num_clients: int) -> int:
        """Neighbours per client in a round of ``num_clients``."""
        if self.all_pairs or num_clients <= 1:
            return max(0, num_clients - 1)
        k = self.degree if self.degree is not None else default_degree(num_clients)
        return min(num_clients - 1, 2 * math.ceil(k / 2))

    def round_cost(
        self, num_clients: int, num_params: int, plain_update_bytes: int
    ) -> SecureRoundCost:
        """The extra cost of a round of ``num_clients`` on a model of ``num_params``."""
        k = self.neighbours(num_clients)
        length = num_params + 1
        units = self.units
        value_bytes = 4 if self.bits <= 32 else 8
        client_s = (
            2 * k * units.agree_s
            + (k + 1) * units.share_s_per_holder
            + (k + 1) * length * units.mask_s_per_value
            + length * units.quantize_s_per_value
        )
        dropped = math.floor(self.dropout_fraction * num_clients)
        survivors = num_clients - dropped
        server_s = (
            survivors + dropped * k
        ) * length * units.mask_s_per_value + num_clients * units.recover_s
        up = (
            KEY_ADVERT_BYTES
            + k * ENCRYPTED_SHARE_BYTES
            + length * value_bytes
            + (k + 1) * REVEALED_SHARE_BYTES
        )
        down = 64 + 4 * k + k * KEY_ADVERT_BYTES + k * ENCRYPTED_SHARE_BYTES + 8 * (k + 1)
        return SecureRoundCost(
            client_compute_s=client_s,
            server_compute_s=server_s,
            extra_bytes_up=max(0, up - plain_update_bytes),
            extra_bytes_down=down,
            round_trips=EXTRA_ROUND_TRIPS,
        )


def calibrate(length: int = 1_000_000, repeats: int = 3) -> UnitCosts:
    """Measure the unit costs of this machine on the real primitives (a few seconds)."""
    scratch = mask_buffer(length, 32)
    total = np.zeros(length, dtype=np.uint32)
    mask_s = _best(
        repeats, lambda: total.__iadd__(expand_mask(os.urandom(32), length, 32, scratch))
    )
    values = np.random.default_rng(0).normal(0, 0.01, length)
    quantizer = Quantizer(1.0, 32, 100)
    quantize_s = _best(repeats, lambda: quantizer.quantize(values))
    a, b = KeyPair.generate(), KeyPair.generate()
    agree_s = _best(
        repeats, lambda: [agree(a.private, b.public, bytes(16), b"x") for _ in range(20)]
    )
    holders = list(range(21))
    key = os.urandom(32)

    def share() -> None:
        split_secret(a.private, holders, 11)
        split_secret(b.private, holders, 11)
        for _ in holders:
            encrypt(key, bytes(132), bytes(32))

    share_s = _best(repeats, share)
    shares = split_secret(a.private, holders, 11)
    recover_s = _best(repeats, lambda: recover_secret(shares, 11))
    return UnitCosts(
        mask_s_per_value=mask_s / length,
        quantize_s_per_value=quantize_s / length,
        agree_s=agree_s / 20,
        share_s_per_holder=share_s / len(holders),
        recover_s=recover_s,
    )


def _best(repeats: int, step) -> float:  # type: ignore[no-untyped-def]
    """Fastest of ``repeats`` timings (the least disturbed by other processes)."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return best

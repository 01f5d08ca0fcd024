"""Shamir secret sharing over the prime field GF(2^521 - 1).

Shamir, "How to share a secret", CACM 1979. A 32-byte secret (an X25519 private key
or a self-mask seed) is one field element; any ``threshold`` shares recover it, fewer
reveal nothing. The polynomial's coefficients come from :mod:`secrets`.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence

PRIME = 2**521 - 1
"""A Mersenne prime larger than any 32-byte secret."""

SHARE_BYTES = 66
"""Bytes of one share value (big-endian, fixed width)."""


def split_secret(secret: bytes, holders: Sequence[int], threshold: int) -> dict[int, int]:
    """Shares of ``secret`` for each holder (x-coordinate ``holder + 1``).

    Parameters
    ----------
    secret
        At most 64 bytes.
    holders
        Distinct non-negative ids of the share holders.
    threshold
        Shares needed to recover the secret (1 <= threshold <= len(holders)).

    Returns
    -------
    dict
        Holder id -> share value (an integer below :data:`PRIME`).

    Raises
    ------
    ValueError
        If the threshold does not fit the holders or the secret is too long.
    """
    if not 1 <= threshold <= len(holders):
        raise ValueError(f"threshold {threshold} must be between 1 and {len(holders)} holders")
    if len(set(holders)) != len(holders) or min(holders) < 0:
        raise ValueError("share holders must be distinct non-negative ids")
    if len(secret) > 64:
        raise ValueError(f"secret of {len(secret)} bytes does not fit the field")
    coefficients = [int.from_bytes(secret, "big")]
    coefficients += [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    return {holder: _evaluate(coefficients, holder + 1) for holder in holders}


def _evaluate(coefficients: Sequence[int], x: int) -> int:
    value = 0
    for coefficient in reversed(coefficients):
        value = (value * x + coefficient) % PRIME
    return value


def recover_secret(shares: Mapping[int, int], threshold: int, length: int = 32) -> bytes:
    """The secret from at least ``threshold`` shares (Lagrange interpolation at 0).

    Raises
    ------
    ValueError
        If fewer than ``threshold`` shares are given.
    """
    if len(shares) < threshold:
        raise ValueError(f"{len(shares)} shares, {threshold} needed")
    points = [(holder + 1, value % PRIME) for holder, value in sorted(shares.items())[:threshold]]
    secret = 0
    for i, (x_i, y_i) in enumerate(points):
        numerator, denominator = 1, 1
        for j, (x_j, _) in enumerate(points):
            if i != j:
                numerator = numerator * x_j % PRIME
                denominator = denominator * (x_j - x_i) % PRIME
        secret = (secret + y_i * numerator * pow(denominator, -1, PRIME)) % PRIME
    return secret.to_bytes(length, "big")


def share_to_bytes(value: int) -> bytes:
    """Fixed-width encoding of a share value."""
    return value.to_bytes(SHARE_BYTES, "big")


def share_from_bytes(data: bytes) -> int:
    """A share value back from :func:`share_to_bytes`.

    Raises
    ------
    ValueError
        If the bytes are not one share.
    """
    if len(data) != SHARE_BYTES:
        raise ValueError(f"a share is {SHARE_BYTES} bytes, got {len(data)}")
    value = int.from_bytes(data, "big")
    if value >= PRIME:
        raise ValueError("share value outside the field")
    return value

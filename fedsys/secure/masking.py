"""Arithmetic modulo 2^bits on mask vectors, and the pairwise and self masks themselves."""

from __future__ import annotations

import numpy as np

from fedsys.secure.crypto import agree, expand_mask

MASK_PURPOSE = b"fedsys secagg+ pairwise mask"
CIPHER_PURPOSE = b"fedsys secagg+ share encryption"


def reduce_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """``values`` modulo 2^bits, in place (free for 32 and 64 bits: the dtype wraps)."""
    if bits not in (32, 64):
        values &= values.dtype.type((1 << bits) - 1)
    return values


def pairwise_mask(
    own_private: bytes,
    peer_public: bytes,
    session: bytes,
    length: int,
    bits: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The mask two clients share: PRG(HKDF(X25519(own, peer))), written into ``out``."""
    seed = agree(own_private, peer_public, session, MASK_PURPOSE)
    return expand_mask(seed, length, bits, out)


def apply_pairwise(
    values: np.ndarray, mask: np.ndarray, own_id: int, peer_id: int, sign: int = 1
) -> None:
    """Add (``sign=1``) or remove (``-1``) the pair's mask as ``own_id`` applied it.

    The lower id adds the mask and the higher id subtracts it, so a pair cancels in the sum.
    """
    if (own_id < peer_id) == (sign > 0):
        values += mask
    else:
        values -= mask

"""Pairwise additive masking: sites add masks that cancel in the sum, so the coordinator
learns only the total (Bonawitz et al., CCS 2017, https://eprint.iacr.org/2017/281).

Pure functions, no I/O, on secure aggregation's primitives (:mod:`fedsys.secure.crypto`:
X25519 key pairs, HKDF key agreement, the AES-CTR PRG). Every pair of parties agrees on
a seed by X25519 key agreement; the seed, stretched into a vector over Z_2^64, is added by the
party with the smaller id and subtracted by the other. Values are fixed-point integers
modulo 2^64. When a party drops out after the keys were exchanged, the survivors reveal
the seeds they share with it (:func:`pair_mask`) and the coordinator removes those masks
(:func:`remove_dropped_masks`); the dropped party's own value is never included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from fedsys.secure import crypto
from fedsys.secure.crypto import KeyPair

__all__ = [
    "FRACTION_BITS",
    "KeyPair",
    "decode_fixed",
    "encode_fixed",
    "mask_vector",
    "pair_mask",
    "pair_seed",
    "prg_vector",
    "remove_dropped_masks",
]

FRACTION_BITS = 16
"""Fixed-point fraction bits of encoded values (resolution 2^-16)."""

_MASK_SALT = b"fedsys-analytics-mask"


def pair_seed(private: bytes, peer_public: bytes, context: bytes) -> bytes:
    """The 32-byte seed two parties share for ``context`` (e.g. a query id).

    SecAgg+'s key agreement (:func:`fedsys.secure.crypto.agree`: X25519, then
    HKDF-SHA256 bound to ``context``), so one pair of long-term keys yields fresh,
    independent masks for every query.
    """
    return crypto.agree(private, peer_public, context=_MASK_SALT, purpose=context)


def prg_vector(seed: bytes, length: int) -> np.ndarray:
    """``length`` uniform uint64 values expanded from ``seed`` (SecAgg+'s AES-CTR PRG)."""
    return crypto.expand_mask(seed, length, bits=64).copy()


def pair_mask(seed: bytes, me: str, peer: str, length: int) -> np.ndarray:
    """The mask ``me`` adds for the pair (``me``, ``peer``): +PRG if me < peer, else -PRG."""
    if me == peer:
        raise ValueError("a party shares no mask with itself")
    vector = prg_vector(seed, length)
    return vector if me < peer else (np.uint64(0) - vector)


def mask_vector(
    values: np.ndarray,
    me: str,
    private: bytes,
    peers: Mapping[str, bytes],
    context: bytes,
) -> np.ndarray:
    """``values`` (uint64) plus the pairwise masks with every peer, modulo 2^64.

    Parameters
    ----------
    values
        Encoded values (see :func:`encode_fixed`).
    me
        This party's id.
    private
        This party's X25519 private key.
    peers
        Every other party's id and public key.
    context
        Binds the masks to one use (query id); never reuse a context.
    """
    out = np.asarray(values, dtype=np.uint64).copy()
    for peer, public in sorted(peers.items()):
        if peer == me:
            continue
        out += pair_mask(pair_seed(private, public, context), me, peer, len(out))
    return out


def remove_dropped_masks(
    total: np.ndarray, revealed: Mapping[tuple[str, str], bytes]
) -> np.ndarray:
    """Remove from a survivors' sum the masks they added for dropped peers.

    Parameters
    ----------
    total
        Sum (mod 2^64) of the survivors' masked vectors.
    revealed
        ``(survivor, dropped) -> seed`` revealed by each survivor for each dropped peer.
    """
    out = np.asarray(total, dtype=np.uint64).copy()
    for (survivor, dropped), seed in revealed.items():
        out -= pair_mask(seed, survivor, dropped, len(out))
    return out


def encode_fixed(values: Sequence[float] | np.ndarray, fraction_bits: int = FRACTION_BITS
                 ) -> np.ndarray:
    """Signed reals as fixed-point uint64 (two's complement mod 2^64).

    Raises
    ------
    ValueError
        If a value does not fit in 63 bits after scaling, or is not finite.
    """
    scaled = np.round(np.asarray(values, dtype=np.float64) * (1 << fraction_bits))
    if not np.all(np.isfinite(scaled)) or np.any(np.abs(scaled) >= 2.0**62):
        raise ValueError("a value is too large (or not finite) for a fixed-point secure sum")
    return scaled.astype(np.int64).view(np.uint64)


def decode_fixed(values: np.ndarray, fraction_bits: int = FRACTION_BITS) -> np.ndarray:
    """Reals from a fixed-point uint64 sum."""
    return np.asarray(values, dtype=np.uint64).view(np.int64).astype(np.float64) / (
        1 << fraction_bits)

"""The primitives SecAgg+ needs, all from ``cryptography``: X25519, HKDF, AES-GCM, AES-CTR.

Nothing here is hand-rolled: key agreement is X25519, key derivation HKDF-SHA256,
share encryption AES-256-GCM and mask expansion AES-256-CTR used as a PRG. Private
keys and seeds come from the operating system's CSPRNG (never from a run's seed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedsys.secure.errors import ProtocolViolationError

KEY_BYTES = 32
_NONCE_BYTES = 12
_RAW = serialization.Encoding.Raw
_PUBLIC_RAW = serialization.PublicFormat.Raw
_PRIVATE_RAW = serialization.PrivateFormat.Raw


@dataclass(frozen=True)
class KeyPair:
    """An X25519 key pair with both halves as raw 32-byte strings."""

    private: bytes
    public: bytes

    @classmethod
    def generate(cls) -> KeyPair:
        """A fresh key pair from the OS CSPRNG."""
        key = X25519PrivateKey.generate()
        return cls(
            private=private_bytes(key), public=key.public_key().public_bytes(_RAW, _PUBLIC_RAW)
        )

    @classmethod
    def from_private(cls, private: bytes) -> KeyPair:
        """The pair of a stored raw private key (a site's long-term key)."""
        key = X25519PrivateKey.from_private_bytes(private)
        return cls(private=private, public=key.public_key().public_bytes(_RAW, _PUBLIC_RAW))


def private_bytes(key: X25519PrivateKey) -> bytes:
    """Raw 32 bytes of a private key (what gets secret-shared)."""
    return key.private_bytes(_RAW, _PRIVATE_RAW, serialization.NoEncryption())


def agree(private: bytes, peer_public: bytes, context: bytes, purpose: bytes) -> bytes:
    """A 32-byte key both ends derive: HKDF-SHA256 over the X25519 shared secret.

    Parameters
    ----------
    private, peer_public
        Our raw private key and the peer's raw public key.
    context
        The round's session nonce (salt), so keys never repeat across rounds.
    purpose
        Separates the mask seed from the share-encryption key.

    Raises
    ------
    ProtocolViolationError
        If the peer's public key is malformed or degenerate.
    """
    try:
        shared = X25519PrivateKey.from_private_bytes(private).exchange(
            X25519PublicKey.from_public_bytes(peer_public)
        )
    except ValueError as exc:
        raise ProtocolViolationError(f"bad public key: {exc}") from None
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=context, info=purpose).derive(
        shared
    )


def random_seed() -> bytes:
    """A fresh 32-byte secret (self-mask seed) from the OS CSPRNG."""
    return os.urandom(KEY_BYTES)


def encrypt(key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    """AES-256-GCM with a random nonce, prepended to the ciphertext."""
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated)


def decrypt(key: bytes, ciphertext: bytes, associated: bytes) -> bytes:
    """Open :func:`encrypt`'s output.

    Raises
    ------
    ProtocolViolationError
        If the ciphertext was altered, misrouted or encrypted under another key.
    """
    try:
        return AESGCM(key).decrypt(ciphertext[:_NONCE_BYTES], ciphertext[_NONCE_BYTES:], associated)
    except (InvalidTag, ValueError):
        raise ProtocolViolationError("a share ciphertext failed authentication") from None


def mask_dtype(bits: int) -> np.dtype:
    """The unsigned integer type that holds values modulo 2^bits."""
    return np.dtype(np.uint32) if bits <= 32 else np.dtype(np.uint64)


def expand_mask(seed: bytes, length: int, bits: int, out: np.ndarray | None = None) -> np.ndarray:
    """``length`` pseudo-random integers modulo 2^bits: AES-256-CTR keyed by ``seed``.

    Each seed keys its own stream (a zero counter block is safe: a key is used once
    per purpose), so both ends of a pair expand identical masks. ``out`` (a scratch
    buffer from :func:`mask_buffer`) avoids allocating megabytes per mask.
    """
    dtype = mask_dtype(bits)
    buffer = out if out is not None else mask_buffer(length, bits)
    raw = buffer.view(np.uint8)
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
    size = length * dtype.itemsize
    for offset in range(0, size, len(_ZEROS)):
        n = min(len(_ZEROS), size - offset)
        encryptor.update_into(_ZEROS[:n], raw[offset : offset + n + _BLOCK_BYTES - 1])
    encryptor.finalize()
    values = buffer[:length]
    if bits not in (32, 64):
        values &= dtype.type((1 << bits) - 1)
    return values


def mask_buffer(length: int, bits: int) -> np.ndarray:
    """A scratch buffer :func:`expand_mask` can write ``length`` values into."""
    dtype = mask_dtype(bits)
    return np.empty(length + _BLOCK_BYTES // dtype.itemsize, dtype=dtype)


_BLOCK_BYTES = 16


_ZEROS = memoryview(bytes(1 << 20))
"""Plaintext the keystream is taken from, a megabyte at a time (a constant, never written)."""

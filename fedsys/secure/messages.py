"""The values SecAgg+ participants exchange, one frozen dataclass per message.

The server relays everything; clients never talk to each other. Transports
(``fedsys.wire.secagg`` for protobuf) translate these to bytes and back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fedsys.secure.quantize import Quantizer


@dataclass(frozen=True)
class RoundSetup:
    """What one client is told when a secure round starts.

    Parameters
    ----------
    session
        Random nonce of the round (salt of every derived key).
    client_id
        This client's id in the round.
    neighbours
        Whom it agrees keys with and shares its secrets among.
    threshold
        Shares that recover a secret.
    vector_length
        Integers in the masked input.
    quantizer
        How real values become integers modulo 2^bits.
    """

    session: bytes
    client_id: int
    neighbours: tuple[int, ...]
    threshold: int
    vector_length: int
    quantizer: Quantizer = field(default_factory=Quantizer)


@dataclass(frozen=True)
class KeyAdvert:
    """Step 1, client → all neighbours (via the server): two X25519 public keys."""

    client_id: int
    cipher_public: bytes
    mask_public: bytes


@dataclass(frozen=True)
class EncryptedShare:
    """Step 2: the sender's two shares for one recipient, AES-GCM under their shared key."""

    sender: int
    recipient: int
    ciphertext: bytes


@dataclass(frozen=True)
class MaskedInput:
    """Step 3: the quantized input plus self-mask plus pairwise masks, modulo 2^bits."""

    client_id: int
    values: np.ndarray


@dataclass(frozen=True)
class UnmaskRequest:
    """Step 4, server → client: whose self-mask shares and whose mask-key shares to reveal.

    ``survivors`` sent masked input (reveal their self-mask seed shares); ``dropped``
    shared keys but sent no input (reveal their mask private key shares).
    """

    survivors: tuple[int, ...]
    dropped: tuple[int, ...]


@dataclass(frozen=True)
class UnmaskReply:
    """Step 4, client → server: the requested shares, by the owner of the secret."""

    client_id: int
    self_mask_shares: dict[int, int]
    mask_key_shares: dict[int, int]


@dataclass(frozen=True)
class SecureSum:
    """What the server learns: the sum of the contributors' quantized inputs, nothing else."""

    total: np.ndarray
    contributors: tuple[int, ...]

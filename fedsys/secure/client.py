"""The client side of SecAgg+: keys, shares, masking and unmasking, as a state machine.

Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine
Learning", CCS 2017 (https://eprint.iacr.org/2017/281), with the neighbour graph of
Bell et al., CCS 2020. Each step checks what the server sent against what the
client already knows; a request that would reveal both a client's self-mask seed
and its mask key is refused, whatever order it comes in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedsys.secure.crypto import (
    KeyPair,
    agree,
    decrypt,
    encrypt,
    expand_mask,
    mask_buffer,
    mask_dtype,
    random_seed,
)
from fedsys.secure.errors import ProtocolViolationError, SecureAggregationError
from fedsys.secure.field import share_from_bytes, share_to_bytes, split_secret
from fedsys.secure.masking import CIPHER_PURPOSE, apply_pairwise, pairwise_mask, reduce_bits
from fedsys.secure.messages import (
    EncryptedShare,
    KeyAdvert,
    MaskedInput,
    RoundSetup,
    UnmaskReply,
    UnmaskRequest,
)

_SHARE_PAYLOAD = 2 * 66


class SecAggClient:
    """One client's part in one secure round.

    Call in order: :meth:`advertise`, :meth:`share_keys`, :meth:`receive_shares`,
    :meth:`mask`, :meth:`unmask`. Secrets (key pairs, the self-mask seed) are drawn
    from the OS CSPRNG in :meth:`advertise`.

    Parameters
    ----------
    setup
        The round's settings as the server sent them.
    """

    def __init__(self, setup: RoundSetup) -> None:
        self.setup = setup
        self.stage = "new"
        self.cipher_keys_: KeyPair | None = None
        self.mask_keys_: KeyPair | None = None
        self.self_seed_: bytes | None = None
        self.peer_keys_: dict[int, KeyAdvert] = {}
        self.held_: dict[int, tuple[int, int]] = {}
        """Owner -> (mask-key share, self-mask share) this client holds."""
        self.mask_peers_: tuple[int, ...] = ()
        self.revealed_: dict[int, str] = {}
        """Owner -> which kind of share was already revealed to the server."""

    def _expect(self, stage: str, then: str) -> None:
        if self.stage != stage:
            raise ProtocolViolationError(
                f"client {self.setup.client_id}: {then} requested at stage {self.stage!r}"
            )
        self.stage = then

    def advertise(self) -> KeyAdvert:
        """Step 1: fresh key pairs and self-mask seed; the public keys to advertise."""
        self._expect("new", "advertised")
        self.cipher_keys_ = KeyPair.generate()
        self.mask_keys_ = KeyPair.generate()
        self.self_seed_ = random_seed()
        return KeyAdvert(self.setup.client_id, self.cipher_keys_.public, self.mask_keys_.public)

    def share_keys(self, adverts: Sequence[KeyAdvert]) -> list[EncryptedShare]:
        """Step 2: secret-share the mask key and self-mask seed among the advertising neighbours.

        Raises
        ------
        ProtocolViolationError
            If an advert is not from a neighbour, repeats, or reuses a public key.
        SecureAggregationError
            If fewer than ``threshold`` holders (neighbours plus itself) remain.
        """
        self._expect("advertised", "shared")
        setup = self.setup
        assert self.cipher_keys_ is not None and self.mask_keys_ is not None
        neighbours = set(setup.neighbours)
        seen_keys = {self.cipher_keys_.public, self.mask_keys_.public}
        for advert in adverts:
            if advert.client_id not in neighbours or advert.client_id in self.peer_keys_:
                raise ProtocolViolationError(
                    f"keys of client {advert.client_id}, who is not an unseen neighbour of "
                    f"client {setup.client_id}"
                )
            if {advert.cipher_public, advert.mask_public} & seen_keys:
                raise ProtocolViolationError(f"client {advert.client_id} reuses a public key")
            seen_keys |= {advert.cipher_public, advert.mask_public}
            self.peer_keys_[advert.client_id] = advert
        holders = [setup.client_id, *sorted(self.peer_keys_)]
        if len(holders) < setup.threshold:
            raise SecureAggregationError(
                f"client {setup.client_id} has {len(holders)} share holders, "
                f"threshold is {setup.threshold}"
            )
        assert self.self_seed_ is not None
        key_shares = split_secret(self.mask_keys_.private, holders, setup.threshold)
        seed_shares = split_secret(self.self_seed_, holders, setup.threshold)
        me = setup.client_id
        self.held_[me] = (key_shares[me], seed_shares[me])
        out = []
        for peer in holders[1:]:
            plaintext = share_to_bytes(key_shares[peer]) + share_to_bytes(seed_shares[peer])
            key = agree(
                self.cipher_keys_.private,
                self.peer_keys_[peer].cipher_public,
                setup.session,
                CIPHER_PURPOSE,
            )
            out.append(EncryptedShare(me, peer, encrypt(key, plaintext, _aad(setup, me, peer))))
        return out

    def receive_shares(self, shares: Sequence[EncryptedShare]) -> None:
        """Step 2 (end): decrypt the shares neighbours sent; they are whom we mask with.

        Raises
        ------
        ProtocolViolationError
            If a share is misaddressed, from a stranger, repeated or fails authentication.
        """
        self._expect("shared", "received")
        setup = self.setup
        assert self.cipher_keys_ is not None
        me = setup.client_id
        for share in shares:
            sender = share.sender
            if share.recipient != me or sender not in self.peer_keys_ or sender in self.held_:
                raise ProtocolViolationError(
                    f"share from client {sender} to {share.recipient} is not one client "
                    f"{me} expects"
                )
            key = agree(
                self.cipher_keys_.private,
                self.peer_keys_[sender].cipher_public,
                setup.session,
                CIPHER_PURPOSE,
            )
            plaintext = decrypt(key, share.ciphertext, _aad(setup, sender, me))
            if len(plaintext) != _SHARE_PAYLOAD:
                raise ProtocolViolationError(f"share from client {sender} has the wrong size")
            self.held_[sender] = (
                share_from_bytes(plaintext[:66]),
                share_from_bytes(plaintext[66:]),
            )
        self.mask_peers_ = tuple(sorted(set(self.held_) - {me}))

    def mask(self, values: np.ndarray) -> MaskedInput:
        """Step 3: the quantized input masked by the self-mask and every pairwise mask.

        Raises
        ------
        ValueError
            If ``values`` has the wrong length or type for the round.
        """
        self._expect("received", "masked")
        setup = self.setup
        dtype = mask_dtype(setup.quantizer.bits)
        if values.shape != (setup.vector_length,) or values.dtype != dtype:
            raise ValueError(
                f"masked input must be {setup.vector_length} values of {dtype}, got "
                f"{values.shape} {values.dtype}"
            )
        assert self.self_seed_ is not None and self.mask_keys_ is not None
        bits = setup.quantizer.bits
        scratch = mask_buffer(setup.vector_length, bits)
        masked = values + expand_mask(self.self_seed_, setup.vector_length, bits, scratch)
        for peer in self.mask_peers_:
            mask = pairwise_mask(
                self.mask_keys_.private,
                self.peer_keys_[peer].mask_public,
                setup.session,
                setup.vector_length,
                bits,
                scratch,
            )
            apply_pairwise(masked, mask, setup.client_id, peer)
        return MaskedInput(setup.client_id, reduce_bits(masked, bits))

    def unmask(self, request: UnmaskRequest) -> UnmaskReply:
        """Step 4: reveal self-mask shares of survivors and mask-key shares of dropouts.

        Raises
        ------
        ProtocolViolationError
            If the request names a client as both survivor and dropout, asks for the
            other kind of share of a client already revealed, calls this client a
            dropout, or names clients whose shares it does not hold.
        """
        setup = self.setup
        me = setup.client_id
        survivors, dropped = set(request.survivors), set(request.dropped)
        both = survivors & dropped
        if both:
            raise ProtocolViolationError(
                f"refused: the server asked for both kinds of share of client(s) {sorted(both)}"
            )
        if me in dropped or me not in survivors:
            raise ProtocolViolationError(f"refused: client {me} sent its input, it is no dropout")
        strangers = (survivors | dropped) - set(self.held_)
        if strangers:
            raise ProtocolViolationError(
                f"refused: client {me} holds no shares of client(s) {sorted(strangers)}"
            )
        wanted = {owner: "self_mask" for owner in survivors}
        wanted.update({owner: "mask_key" for owner in dropped})
        conflicts = sorted(o for o, kind in wanted.items() if self.revealed_.get(o, kind) != kind)
        if conflicts:
            raise ProtocolViolationError(
                f"refused: the other kind of share of client(s) {conflicts} was already revealed"
            )
        if self.stage not in ("masked", "unmasked"):
            raise ProtocolViolationError(f"unmasking requested at stage {self.stage!r}")
        self.stage = "unmasked"
        self.revealed_.update(wanted)
        return UnmaskReply(
            client_id=me,
            self_mask_shares={o: self.held_[o][1] for o in sorted(survivors)},
            mask_key_shares={o: self.held_[o][0] for o in sorted(dropped)},
        )


def _aad(setup: RoundSetup, sender: int, recipient: int) -> bytes:
    """Binds a share ciphertext to its round, sender and recipient."""
    return setup.session + sender.to_bytes(8, "big") + recipient.to_bytes(8, "big")

"""The server side of SecAgg+: relay, sum masked inputs, and unmask with survivors' shares.

The server sees public keys, ciphertexts it cannot open, masked vectors and, at
the end, shares of exactly one secret per client: the self-mask seed of those
whose input it summed, the mask key of those who dropped after sharing it. With
fewer than ``threshold`` holders left for any needed secret the round fails before
any share is asked for, and the server learns nothing.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from fedsys.secure.crypto import expand_mask, mask_buffer, mask_dtype
from fedsys.secure.errors import ProtocolViolationError, SecureAggregationError
from fedsys.secure.field import recover_secret
from fedsys.secure.graph import neighbour_graph
from fedsys.secure.masking import apply_pairwise, pairwise_mask, reduce_bits
from fedsys.secure.messages import (
    EncryptedShare,
    KeyAdvert,
    MaskedInput,
    RoundSetup,
    SecureSum,
    UnmaskReply,
    UnmaskRequest,
)
from fedsys.secure.quantize import Quantizer

_STAGES = ("new", "setup", "keys", "shares", "inputs", "unmask", "done")


def threshold_for(holders: int, fraction: float) -> int:
    """Shares needed among ``holders``: ``ceil(fraction × holders)``, at least 2."""
    return min(holders, max(2, math.ceil(fraction * holders)))


class SecAggServer:
    """The aggregator's part in one secure round.

    Call in order: :meth:`setup`; :meth:`receive_advert` per client then
    :meth:`close_adverts`; :meth:`receive_shares` then :meth:`close_shares`;
    :meth:`receive_masked` then :meth:`close_inputs`; :meth:`receive_unmask` then
    :meth:`finish`. Each ``close_*`` fixes who is still in the round; whoever did not
    answer by then has dropped out.

    Parameters
    ----------
    clients
        Ids of the round's selected clients (at least 2).
    vector_length
        Integers in each input.
    threshold
        Fraction of a client's share holders (its neighbours and itself) needed to
        recover its secrets; at least 2 holders.
    degree
        Neighbours per client (``None``: all pairs, Bonawitz et al.'s SecAgg).
    clip_range, bits
        Quantization settings the clients apply (see :class:`Quantizer`).
    """

    def __init__(
        self,
        clients: Sequence[int],
        vector_length: int,
        threshold: float = 0.5,
        degree: int | None = None,
        clip_range: float = 8.0,
        bits: int = 32,
    ) -> None:
        self.clients = tuple(int(c) for c in clients)
        self.vector_length = vector_length
        self.threshold = threshold
        self.degree = degree
        self.clip_range = clip_range
        self.bits = bits
        self.stage = "new"
        self.graph_: dict[int, tuple[int, ...]] = {}
        self.threshold_ = 0
        self.session_ = b""
        self.adverts_: dict[int, KeyAdvert] = {}
        self.keyed_: set[int] = set()
        self.shares_: dict[int, list[EncryptedShare]] = {}
        self.holders_: dict[int, set[int]] = {}
        self.sharers_: set[int] = set()
        self.total_: np.ndarray | None = None
        self.inputs_: set[int] = set()
        self.requests_: dict[int, UnmaskRequest] = {}
        self.replies_: dict[int, UnmaskReply] = {}

    # ------------------------------------------------------------------ helpers
    @property
    def quantizer(self) -> Quantizer:
        """The round's quantization (sized for every selected client)."""
        return Quantizer(self.clip_range, self.bits, max(1, len(self.clients)))

    def _advance(self, expected: str, then: str | None = None) -> None:
        if self.stage != expected:
            raise ProtocolViolationError(
                f"secure round is at stage {self.stage!r}, not {expected!r}"
            )
        if then is not None:
            self.stage = then

    def _fail(self, reason: str) -> SecureAggregationError:
        self.stage = "failed"
        return SecureAggregationError(f"secure aggregation round failed: {reason}")

    # ------------------------------------------------------------------ step 0
    def setup(self) -> dict[int, RoundSetup]:
        """Draw the neighbour graph and session nonce; each client's setup message.

        Raises
        ------
        SecureAggregationError
            With fewer than 2 clients, or ids that repeat.
        """
        self._advance("new", "setup")
        if len(set(self.clients)) != len(self.clients) or len(self.clients) < 2:
            raise self._fail(f"needs at least 2 distinct clients, got {len(self.clients)}")
        self.graph_ = neighbour_graph(self.clients, self.degree)
        holders = 1 + max(len(peers) for peers in self.graph_.values())
        self.threshold_ = threshold_for(holders, self.threshold)
        self.session_ = os.urandom(16)
        quantizer = self.quantizer
        return {
            c: RoundSetup(
                session=self.session_,
                client_id=c,
                neighbours=self.graph_[c],
                threshold=self.threshold_,
                vector_length=self.vector_length,
                quantizer=quantizer,
            )
            for c in self.clients
        }

    # ------------------------------------------------------------------ step 1
    def receive_advert(self, advert: KeyAdvert) -> None:
        """A client's public keys (once per selected client)."""
        self._advance("setup")
        if advert.client_id not in self.graph_ or advert.client_id in self.adverts_:
            raise ProtocolViolationError(f"unexpected keys from client {advert.client_id}")
        self.adverts_[advert.client_id] = advert

    def close_adverts(self) -> dict[int, list[KeyAdvert]]:
        """Fix who advertised; each of them gets its advertising neighbours' keys.

        Clients left with fewer than ``threshold`` holders are dropped too.

        Raises
        ------
        SecureAggregationError
            If fewer than ``threshold`` clients remain.
        """
        self._advance("setup", "keys")
        keyed = set(self.adverts_)
        while True:
            short = {c for c in keyed if len(set(self.graph_[c]) & keyed) + 1 < self.threshold_}
            if not short:
                break
            keyed -= short
        if len(keyed) < self.threshold_:
            raise self._fail(
                f"{len(keyed)} clients sent keys, {self.threshold_} are needed (threshold)"
            )
        self.keyed_ = keyed
        return {c: [self.adverts_[p] for p in self.graph_[c] if p in keyed] for c in sorted(keyed)}

    # ------------------------------------------------------------------ step 2
    def receive_shares(self, sender: int, shares: Sequence[EncryptedShare]) -> None:
        """One client's encrypted shares, one per neighbour that advertised."""
        self._advance("keys")
        if sender not in self.keyed_ or sender in self.sharers_:
            raise ProtocolViolationError(f"unexpected shares from client {sender}")
        expected = set(self.graph_[sender]) & self.keyed_
        recipients = [s.recipient for s in shares]
        if any(s.sender != sender for s in shares) or sorted(recipients) != sorted(expected):
            raise ProtocolViolationError(
                f"client {sender} must send one share to each of its {len(expected)} neighbours"
            )
        self.sharers_.add(sender)
        self.holders_[sender] = {sender, *recipients}
        for share in shares:
            self.shares_.setdefault(share.recipient, []).append(share)

    def close_shares(self) -> dict[int, list[EncryptedShare]]:
        """Fix who shared; each of them gets the shares addressed to it by the others.

        Raises
        ------
        SecureAggregationError
            If fewer than ``threshold`` clients shared.
        """
        self._advance("keys", "shares")
        if len(self.sharers_) < self.threshold_:
            raise self._fail(
                f"{len(self.sharers_)} clients shared keys, {self.threshold_} are needed"
            )
        return {
            c: [s for s in self.shares_.get(c, []) if s.sender in self.sharers_]
            for c in sorted(self.sharers_)
        }

    # ------------------------------------------------------------------ step 3
    def receive_masked(self, masked: MaskedInput) -> None:
        """Add one masked input to the running sum (inputs are never kept one by one)."""
        self._advance("shares")
        client = masked.client_id
        if client not in self.sharers_ or client in self.inputs_:
            raise ProtocolViolationError(f"unexpected masked input from client {client}")
        dtype = mask_dtype(self.bits)
        if masked.values.shape != (self.vector_length,) or masked.values.dtype != dtype:
            raise ProtocolViolationError(
                f"masked input of client {client} must be {self.vector_length} {dtype} values"
            )
        if self.total_ is None:
            self.total_ = np.zeros(self.vector_length, dtype=dtype)
        self.total_ += masked.values
        self.inputs_.add(client)

    def close_inputs(self) -> dict[int, UnmaskRequest]:
        """Fix whose input counts; what each of them is asked to reveal.

        Raises
        ------
        SecureAggregationError
            If fewer than ``threshold`` inputs arrived, or any needed secret has fewer
            than ``threshold`` holders among the survivors (checked before any share
            is requested, so the server learns nothing).
        """
        self._advance("shares", "inputs")
        survivors = self.inputs_
        if len(survivors) < self.threshold_:
            raise self._fail(
                f"{len(survivors)} masked inputs arrived, {self.threshold_} are needed"
            )
        for owner in self._needed_owners():
            left = len(self.holders_[owner] & survivors)
            if left < self.threshold_:
                raise self._fail(
                    f"only {left} of the holders of client {owner}'s shares remain, "
                    f"{self.threshold_} are needed (too many dropouts)"
                )
        dropped = self.sharers_ - survivors
        self.requests_ = {
            c: UnmaskRequest(
                survivors=tuple(sorted(({c} | set(self.graph_[c])) & survivors)),
                dropped=tuple(sorted(set(self.graph_[c]) & dropped)),
            )
            for c in sorted(survivors)
        }
        self.stage = "unmask"
        return dict(self.requests_)

    def _needed_owners(self) -> set[int]:
        """Survivors (self-mask) and dropouts with a surviving neighbour (mask key)."""
        dropped = self.sharers_ - self.inputs_
        return set(self.inputs_) | {d for d in dropped if set(self.graph_[d]) & self.inputs_}

    # ------------------------------------------------------------------ step 4
    def receive_unmask(self, reply: UnmaskReply) -> None:
        """One survivor's revealed shares (exactly those requested)."""
        self._advance("unmask")
        request = self.requests_.get(reply.client_id)
        if request is None or reply.client_id in self.replies_:
            raise ProtocolViolationError(f"unexpected unmask reply from client {reply.client_id}")
        if set(reply.self_mask_shares) != set(request.survivors) or set(
            reply.mask_key_shares
        ) != set(request.dropped):
            raise ProtocolViolationError(
                f"client {reply.client_id} revealed other shares than requested"
            )
        self.replies_[reply.client_id] = reply

    def finish(self) -> SecureSum:
        """Remove every mask; the sum of the survivors' inputs modulo 2^bits.

        Raises
        ------
        SecureAggregationError
            If too few survivors answered to recover a needed secret.
        """
        self._advance("unmask", "done")
        assert self.total_ is not None
        seeds: dict[int, dict[int, int]] = {}
        keys: dict[int, dict[int, int]] = {}
        for holder, reply in self.replies_.items():
            for owner, value in reply.self_mask_shares.items():
                seeds.setdefault(owner, {})[holder] = value
            for owner, value in reply.mask_key_shares.items():
                keys.setdefault(owner, {})[holder] = value
        total = self.total_
        scratch = mask_buffer(self.vector_length, self.bits)
        for owner in sorted(self.inputs_):
            seed = self._recover(seeds.get(owner, {}), owner, "self-mask seed")
            total -= expand_mask(seed, self.vector_length, self.bits, scratch)
        for owner in sorted(self._needed_owners() - self.inputs_):
            private = self._recover(keys.get(owner, {}), owner, "mask key")
            for peer in sorted(set(self.graph_[owner]) & self.inputs_):
                mask = pairwise_mask(
                    private,
                    self.adverts_[peer].mask_public,
                    self.session_,
                    self.vector_length,
                    self.bits,
                    scratch,
                )
                # the survivor applied the mask as seen from its side: undo that
                apply_pairwise(total, mask, peer, owner, sign=-1)
        self.total_ = None
        return SecureSum(reduce_bits(total, self.bits), tuple(sorted(self.inputs_)))

    def _recover(self, shares: dict[int, int], owner: int, what: str) -> bytes:
        if len(shares) < self.threshold_:
            self.stage = "failed"
            raise SecureAggregationError(
                f"secure aggregation round failed: {len(shares)} shares of client {owner}'s "
                f"{what} arrived, {self.threshold_} are needed (too many dropouts while "
                "unmasking)"
            )
        try:
            return recover_secret(shares, self.threshold_)
        except (ValueError, OverflowError):
            raise ProtocolViolationError(
                f"shares of client {owner}'s {what} are inconsistent"
            ) from None

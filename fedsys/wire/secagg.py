"""SecAgg+ messages to protobuf and back, for every runtime that relays them.

The protocol itself (``fedsys.secure``) knows nothing of bytes on a wire; this
module is the one translation, checked on the way in: a malformed message becomes a
:class:`~fedsys.secure.ProtocolViolationError` naming the problem.
"""

from __future__ import annotations

from fedsys.secure.errors import ProtocolViolationError
from fedsys.secure.field import share_from_bytes, share_to_bytes
from fedsys.secure.messages import (
    EncryptedShare,
    KeyAdvert,
    RoundSetup,
    UnmaskReply,
    UnmaskRequest,
)
from fedsys.secure.quantize import Quantizer
from fedsys.wire.protos import secure_pb2

_KEY_BYTES = 32


def setup_to_proto(setup: RoundSetup) -> secure_pb2.RoundSetup:
    """A client's round setup as a message."""
    q = setup.quantizer
    return secure_pb2.RoundSetup(
        session=setup.session,
        client_id=setup.client_id,
        neighbours=list(setup.neighbours),
        threshold=setup.threshold,
        vector_length=setup.vector_length,
        clip_range=q.clip_range,
        bits=q.bits,
        max_summands=q.max_summands,
    )


def setup_from_proto(message: secure_pb2.RoundSetup) -> RoundSetup:
    """The round setup a client received (its settings checked)."""
    try:
        quantizer = Quantizer(message.clip_range, message.bits, message.max_summands)
    except ValueError as exc:
        raise ProtocolViolationError(f"bad secure round setup: {exc}") from None
    if len(message.session) != 16 or message.threshold < 1:
        raise ProtocolViolationError("bad secure round setup: session or threshold")
    return RoundSetup(
        session=bytes(message.session),
        client_id=int(message.client_id),
        neighbours=tuple(int(n) for n in message.neighbours),
        threshold=int(message.threshold),
        vector_length=int(message.vector_length),
        quantizer=quantizer,
    )


def advert_to_proto(advert: KeyAdvert) -> secure_pb2.KeyAdvert:
    """Public keys as a message."""
    return secure_pb2.KeyAdvert(
        client_id=advert.client_id,
        cipher_public=advert.cipher_public,
        mask_public=advert.mask_public,
    )


def advert_from_proto(message: secure_pb2.KeyAdvert) -> KeyAdvert:
    """Public keys from a message (each must be 32 bytes)."""
    if len(message.cipher_public) != _KEY_BYTES or len(message.mask_public) != _KEY_BYTES:
        raise ProtocolViolationError(f"public keys of client {message.client_id} are not 32 bytes")
    return KeyAdvert(
        int(message.client_id), bytes(message.cipher_public), bytes(message.mask_public)
    )


def share_to_proto(share: EncryptedShare) -> secure_pb2.EncryptedShare:
    """An encrypted share as a message."""
    return secure_pb2.EncryptedShare(
        sender=share.sender, recipient=share.recipient, ciphertext=share.ciphertext
    )


def share_from_proto(message: secure_pb2.EncryptedShare) -> EncryptedShare:
    """An encrypted share from a message."""
    return EncryptedShare(int(message.sender), int(message.recipient), bytes(message.ciphertext))


def request_to_proto(request: UnmaskRequest) -> secure_pb2.UnmaskRequest:
    """An unmask request as a message."""
    return secure_pb2.UnmaskRequest(
        survivors=list(request.survivors), dropped=list(request.dropped)
    )


def request_from_proto(message: secure_pb2.UnmaskRequest) -> UnmaskRequest:
    """An unmask request from a message."""
    return UnmaskRequest(
        tuple(int(c) for c in message.survivors), tuple(int(c) for c in message.dropped)
    )


def reply_to_proto(reply: UnmaskReply) -> secure_pb2.UnmaskReply:
    """Revealed shares as a message."""
    return secure_pb2.UnmaskReply(
        client_id=reply.client_id,
        self_mask_shares=[
            secure_pb2.RevealedShare(owner=o, value=share_to_bytes(v))
            for o, v in reply.self_mask_shares.items()
        ],
        mask_key_shares=[
            secure_pb2.RevealedShare(owner=o, value=share_to_bytes(v))
            for o, v in reply.mask_key_shares.items()
        ],
    )


def reply_from_proto(message: secure_pb2.UnmaskReply) -> UnmaskReply:
    """Revealed shares from a message (each a field element, no owner twice)."""
    try:
        seeds = {int(s.owner): share_from_bytes(s.value) for s in message.self_mask_shares}
        keys = {int(s.owner): share_from_bytes(s.value) for s in message.mask_key_shares}
    except ValueError as exc:
        raise ProtocolViolationError(f"bad unmask reply: {exc}") from None
    if len(seeds) != len(message.self_mask_shares) or len(keys) != len(message.mask_key_shares):
        raise ProtocolViolationError("bad unmask reply: an owner appears twice")
    return UnmaskReply(int(message.client_id), seeds, keys)

"""SecAgg+ messages survive protobuf, and malformed ones are refused by name."""

from __future__ import annotations

import pytest

from fedsys.secure import ProtocolViolationError, SecAggClient, SecAggServer
from fedsys.secure.messages import UnmaskReply, UnmaskRequest
from fedsys.wire import secagg
from fedsys.wire.protos import secure_pb2


def test_a_round_setup_and_keys_round_trip() -> None:
    setup = SecAggServer(range(5), 10, degree=2, bits=24).setup()[3]
    advert = SecAggClient(setup).advertise()

    again = secagg.setup_from_proto(
        secure_pb2.RoundSetup.FromString(secagg.setup_to_proto(setup).SerializeToString())
    )

    assert again == setup
    assert secagg.advert_from_proto(secagg.advert_to_proto(advert)) == advert
    request = UnmaskRequest(survivors=(1, 3), dropped=(4,))
    assert secagg.request_from_proto(secagg.request_to_proto(request)) == request
    reply = UnmaskReply(3, {1: 5, 3: 7}, {4: 2**500})
    assert secagg.reply_from_proto(secagg.reply_to_proto(reply)) == reply


def test_malformed_messages_are_refused() -> None:
    with pytest.raises(ProtocolViolationError, match="not 32 bytes"):
        secagg.advert_from_proto(secure_pb2.KeyAdvert(client_id=1, cipher_public=b"x"))
    bad = secure_pb2.UnmaskReply(
        client_id=1, self_mask_shares=[secure_pb2.RevealedShare(owner=2, value=b"\xff" * 66)]
    )
    with pytest.raises(ProtocolViolationError, match="outside the field"):
        secagg.reply_from_proto(bad)
    with pytest.raises(ProtocolViolationError, match="bits must be between"):
        secagg.setup_from_proto(secure_pb2.RoundSetup(session=bytes(16), bits=99, threshold=2))

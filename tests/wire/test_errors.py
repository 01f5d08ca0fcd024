"""One line for a failed call."""

import grpc

from fedsys.wire.errors import error_text


def test_grpc_errors_give_code_and_details_on_one_line():
    error = grpc.aio.AioRpcError(
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(),
        details="token revoked\n  by the operator",
    )
    assert error_text(error) == "PERMISSION_DENIED: token revoked by the operator"
    bare = grpc.aio.AioRpcError(grpc.StatusCode.CANCELLED, grpc.aio.Metadata(),
                                grpc.aio.Metadata())
    assert error_text(bare) == "CANCELLED"


def test_other_errors_give_their_message_or_type():
    assert error_text(TimeoutError("no word for 20 s")) == "no word for 20 s"
    assert error_text(ConnectionError()) == "ConnectionError"

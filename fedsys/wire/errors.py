"""One line of text for a failed call, the same in every runtime's logs and refusals."""

from __future__ import annotations

import grpc

__all__ = ["error_text"]


def error_text(exc: BaseException) -> str:
    """``CODE: details`` for a gRPC error, the message (or the type's name) otherwise.

    Parameters
    ----------
    exc
        A ``grpc.aio.AioRpcError`` (or any ``grpc.RpcError`` that carries a status), or
        any other exception.

    Returns
    -------
    str
        One line: newlines in the details are folded into spaces.
    """
    code = getattr(exc, "code", None)
    if isinstance(exc, grpc.RpcError) and callable(code):
        status = code()
        name = status.name if isinstance(status, grpc.StatusCode) else str(status)
        details = exc.details() if callable(getattr(exc, "details", None)) else ""
        text = f"{name}: {details}" if details else name
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())

"""What the real runtimes (``deploy/``, ``silo/``) share on the network.

Protobuf messages and their generated code (``protos/``, regenerated with
``python -m fedsys.wire.codegen``), gRPC servers and channels with TLS and size limits
(:mod:`~fedsys.wire.transport`), certificate provisioning (:mod:`~fedsys.wire.tls`),
bearer tokens (:mod:`~fedsys.wire.auth`), chunked payloads with checksums
(:mod:`~fedsys.wire.chunks`) and weights as raw bytes (:mod:`~fedsys.wire.tensors`).
The transport knows nothing of rounds.
"""

from fedsys.wire.auth import (
    AuthError,
    TokenAuthInterceptor,
    TokenStore,
    bearer_metadata,
    issue_tokens,
    read_token,
)
from fedsys.wire.chunks import PayloadError, Reassembler, sha256_hex, split
from fedsys.wire.tensors import layout_of, weights_from_bytes, weights_to_bytes
from fedsys.wire.transport import (
    Backoff,
    ChannelSecurity,
    ServerSecurity,
    bind,
    make_server,
    open_channel,
)

__all__ = [
    "AuthError",
    "Backoff",
    "ChannelSecurity",
    "PayloadError",
    "Reassembler",
    "ServerSecurity",
    "TokenAuthInterceptor",
    "TokenStore",
    "bearer_metadata",
    "bind",
    "issue_tokens",
    "layout_of",
    "make_server",
    "open_channel",
    "read_token",
    "sha256_hex",
    "split",
    "weights_from_bytes",
    "weights_to_bytes",
]

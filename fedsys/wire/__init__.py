"""What the real runtimes (``deploy/``, ``silo/``) share on the network.

Protobuf messages and their generated code (``protos/``, regenerated with
``python -m fedsys.wire.codegen``), gRPC servers and channels with TLS and size limits
(:mod:`~fedsys.wire.transport`), certificate provisioning (:mod:`~fedsys.wire.tls`),
bearer tokens (:mod:`~fedsys.wire.auth`), chunked payloads with checksums and the one
chunk-stream receiver with its limits and inactivity deadline (:mod:`~fedsys.wire.
chunks`), weights as raw bytes (:mod:`~fedsys.wire.tensors`), the reconnecting client
loop (:mod:`~fedsys.wire.reconnect`), one-line error text (:mod:`~fedsys.wire.errors`),
JSON-lines logs (:mod:`~fedsys.wire.logs`) and the local launchers' child processes
(:mod:`~fedsys.wire.supervise`). The transport knows nothing of rounds.
"""

from fedsys.wire.auth import (
    AuthError,
    TokenAuthInterceptor,
    TokenStore,
    bearer_metadata,
    issue_tokens,
    read_token,
)
from fedsys.wire.chunks import (
    ChunkTimeoutError,
    PayloadError,
    Reassembler,
    StreamCutError,
    receive,
    sha256_hex,
    split,
)
from fedsys.wire.errors import error_text
from fedsys.wire.logs import setup_logging
from fedsys.wire.reconnect import keep_connected
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
    "ChunkTimeoutError",
    "PayloadError",
    "Reassembler",
    "ServerSecurity",
    "StreamCutError",
    "TokenAuthInterceptor",
    "TokenStore",
    "bearer_metadata",
    "bind",
    "error_text",
    "issue_tokens",
    "keep_connected",
    "layout_of",
    "make_server",
    "open_channel",
    "read_token",
    "receive",
    "setup_logging",
    "sha256_hex",
    "split",
    "weights_from_bytes",
    "weights_to_bytes",
]

"""Regenerate the checked-in protobuf and gRPC code: ``python -m fedsys.wire.codegen``.

The generated modules sit beside their ``.proto`` files in ``fedsys/wire/protos`` and
are committed, so installing fedsys needs no protoc. Run this after editing a
``.proto`` file (it needs the ``grpcio-tools`` dev dependency).
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_DIR = Path(__file__).parent / "protos"
REPO_ROOT = PROTO_DIR.parents[2]


def generate() -> list[Path]:
    """Compile every ``.proto`` in ``fedsys/wire/protos``; return the files compiled.

    Raises
    ------
    RuntimeError
        If protoc reports an error.
    """
    from grpc_tools import protoc

    protos = sorted(PROTO_DIR.glob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    for proto in protos:
        relative = proto.relative_to(REPO_ROOT)
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{REPO_ROOT}",
                f"-I{include}",
                f"--python_out={REPO_ROOT}",
                f"--pyi_out={REPO_ROOT}",
                f"--grpc_python_out={REPO_ROOT}",
                str(relative),
            ]
        )
        if status != 0:
            raise RuntimeError(f"protoc failed on {relative} (exit {status})")
    return protos


if __name__ == "__main__":
    for path in generate():
        print(f"generated code for {path.name}")
    sys.exit(0)

"""The checked-in protobuf and gRPC code is what the ``.proto`` files generate today.

The generator (``python -m fedsys.wire.codegen``) runs into a temporary copy of the
protos, and every generated file must equal the committed one byte for byte. The
generated code names the grpcio-tools and protobuf versions that wrote it (a header
comment, and the versions it checks at import), so regenerate with the grpcio-tools
version that pyproject.toml pins.
"""

from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path

import pytest

from fedsys.wire import codegen

PROTOS = Path(__file__).resolve().parents[2] / "fedsys" / "wire" / "protos"
GENERATED = ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py")


def _generated_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for pattern in GENERATED for p in folder.glob(pattern)}


def test_generated_code_matches_the_protos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip(
        "grpc_tools.protoc", reason="grpcio-tools (a dev dependency) is not installed"
    )
    # Prepare: the .proto files alone, at the same path under a fresh root.
    proto_dir = tmp_path / "fedsys" / "wire" / "protos"
    proto_dir.mkdir(parents=True)
    protos = sorted(PROTOS.glob("*.proto"))
    assert protos, f"no .proto files in {PROTOS}"
    for proto in protos:
        shutil.copy(proto, proto_dir / proto.name)
    monkeypatch.setattr(codegen, "PROTO_DIR", proto_dir)
    monkeypatch.setattr(codegen, "REPO_ROOT", tmp_path)
    monkeypatch.chdir(tmp_path)
    # Act
    compiled = codegen.generate()
    # Assert: the same files, with the same bytes.
    assert [p.name for p in compiled] == [p.name for p in protos]
    fresh = _generated_files(proto_dir)
    checked_in = _generated_files(PROTOS)
    assert len(fresh) == 3 * len(protos)
    assert sorted(checked_in) == sorted(fresh), "generated files missing or stale"
    stale = sorted(name for name in fresh if fresh[name] != checked_in[name])
    assert not stale, (
        f"{stale} differ from what grpcio-tools {_grpc_tools_version()} generates from the "
        ".proto files: run `python -m fedsys.wire.codegen` with the pinned grpcio-tools and "
        "commit the result"
    )


def _grpc_tools_version() -> str:
    try:
        return metadata.version("grpcio-tools")
    except metadata.PackageNotFoundError:
        return "(version unknown)"

"""The aggregator's rooms: its state is what the handlers are given; its folder is claimed first."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch

from fedsys.config.schema import RunConfig
from fedsys.core.weights import ModelWeights
from fedsys.deploy.build import server_parts
from fedsys.deploy.secure_round import SecureService
from fedsys.deploy.server import AggregatorServer
from fedsys.deploy.service import AggregatorService
from fedsys.deploy.state import ModelBlob, ServerState
from fedsys.metrics.run_folder import ROUNDS_FILE, OutputExistsError
from fedsys.wire import auth
from fedsys.wire.chunks import sha256_hex
from fedsys.wire.tensors import weights_to_bytes
from fedsys.wire.transport import ServerSecurity

NAMES = ["client-0000", "client-0001"]


def _server(tmp_path: Path, **deploy: object) -> AggregatorServer:
    config = RunConfig.model_validate(
        {
            "rounds": 1,
            "clients_per_round": 2,
            "dataset": {"name": "digits", "num_clients": 2},
            "model": {"name": "mlp", "hidden": [8]},
            "output_dir": str(tmp_path / "out"),
            "deploy": {"insecure": True, "port": 0, "wait_for_clients_s": 1, **deploy},
        }
    )
    auth.issue_tokens(tmp_path / "pki", NAMES)
    return AggregatorServer(
        server_parts(config),
        auth.TokenStore(tmp_path / "pki" / "tokens.json"),
        tmp_path / "out",
        ServerSecurity(None, insecure=True),
    )


def test_the_handlers_are_given_the_servers_state(tmp_path: Path) -> None:
    server = _server(tmp_path, secure_aggregation="secagg")
    server.state.secure_plan = server._secure_plan()

    handlers = server.handlers()

    assert [type(h) for h in handlers] == [AggregatorService, SecureService]
    assert all(isinstance(h.state, ServerState) for h in handlers)  # type: ignore[attr-defined]
    assert all(h.state is server.state for h in handlers)  # type: ignore[attr-defined]


def test_the_state_reports_status_before_any_round(tmp_path: Path) -> None:
    state = _server(tmp_path).state

    reply = state.status()

    assert (reply.round_idx, reply.rounds, reply.phase, reply.assigned) == (0, 1, "starting", 0)
    assert state.model_blob.version == -1  # no model is served before round 0's is ready


def test_model_blob_is_the_checksummed_wire_bytes() -> None:
    weights = ModelWeights.from_module(torch.nn.Linear(3, 2))

    blob = ModelBlob.of(weights, 4)

    assert blob.version == 4
    assert blob.data == weights_to_bytes(weights)
    assert blob.sha256 == sha256_hex(blob.data)


def test_a_folder_holding_another_run_is_refused_before_listening(tmp_path: Path) -> None:
    server = _server(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ROUNDS_FILE).write_text('{"round_idx": 0}\n')
    port_file = tmp_path / "port"

    with pytest.raises(OutputExistsError, match="--overwrite"):
        asyncio.run(server.serve(port_file))

    assert not port_file.exists()
    assert (tmp_path / "out" / ROUNDS_FILE).read_text() == '{"round_idx": 0}\n'

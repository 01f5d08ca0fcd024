"""A deployed client trains on the PyTorch threads of the run's ``sim.threads``."""

from __future__ import annotations

import json

import torch
from torch import nn

from fedsys.config.schema import RunConfig
from fedsys.core.weights import ModelWeights
from fedsys.deploy.build import server_parts
from fedsys.deploy.client import DeployClient, LocalData
from fedsys.deploy.state import ServerState
from fedsys.wire.protos import deploy_pb2
from fedsys.wire.tensors import layout_of
from fedsys.wire.transport import ChannelSecurity


def test_the_server_sends_the_threads_with_the_sections_a_client_builds_from() -> None:
    config = RunConfig.model_validate({"sim": {"threads": 2}, "dataset": {"num_clients": 10}})
    state = ServerState.of(server_parts(config), tokens=None)  # type: ignore[arg-type]

    run = json.loads(state.client_config_json())

    assert set(run) == {"seed", "dataset", "model", "sim", "deploy"}
    assert run["sim"] == {"threads": 2}
    assert run["deploy"] == {"transfer_idle_s": 5.0, "transfer_min_bytes_per_s": 32768.0}


def test_the_client_sets_the_threads_it_is_sent() -> None:
    model = nn.Linear(4, 2)
    local = LocalData(model, torch.zeros(3, 4), torch.zeros(3, dtype=torch.long))
    client = DeployClient("localhost:1", "token", ChannelSecurity(insecure=True), lambda run: local)
    reply = deploy_pb2.RegisterReply(
        client_id=0,
        run_config_json=json.dumps({"seed": 0, "sim": {"threads": 2}}),
        layout=layout_of(ModelWeights.from_module(model)),
    )
    before = torch.get_num_threads()
    try:
        client._prepare(reply)
        during = torch.get_num_threads()
        client._prepare(deploy_pb2.RegisterReply(  # a server of before sim.threads: auto
            client_id=0, run_config_json="{}", layout=reply.layout))
        after_auto = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)

    assert (during, after_auto) == (2, 1)

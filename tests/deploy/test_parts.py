"""The deployment's pieces without sockets: registry, live round, streaming feed, checkpoint."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import torch

from fedsys.aggregation import FedAvg
from fedsys.config.schema import RunConfig
from fedsys.core.training import fold_seed
from fedsys.core.update import ClientUpdate, LossStats
from fedsys.core.weights import ModelWeights
from fedsys.deploy.checkpoint import CheckpointError, ServerCheckpoint, config_hash
from fedsys.deploy.feed import StreamingAggregation
from fedsys.deploy.registry import Assignment, ClientRegistry, UnknownClientError
from fedsys.deploy.round_state import Arrival, LiveRound
from fedsys.deploy.service import device_speed
from fedsys.parts.rules import task_seed
from fedsys.wire.protos import deploy_pb2


def _weights() -> ModelWeights:
    return ModelWeights.from_tensors({"w": torch.zeros(2, 2)})


def test_registry_tracks_idle_busy_and_disconnects():
    async def scenario():
        registry = ClientRegistry(["a", "b", "c"])
        lost = []
        registry.on_disconnect.append(lambda s: lost.append((s.client_id, s.assignment)))
        sessions = [registry.connect(name) for name in "abc"]
        for s in sessions[:2]:
            s.subscribed = True
        np.testing.assert_array_equal(registry.idle_ids(), [0, 1])
        task = Assignment("t1", 1, 0, 0, time.monotonic())
        registry.assign(task, deploy_pb2.Instruction())
        np.testing.assert_array_equal(registry.idle_ids(), [0])
        assert registry.busy_count() == 1
        registry.disconnect(sessions[1].session_id)
        assert lost == [(1, task)]
        with pytest.raises(UnknownClientError):
            registry.session("b", sessions[1].session_id)
        with pytest.raises(UnknownClientError, match="not provisioned"):
            registry.connect("mallory")
        again = registry.connect("a")  # a reconnect supersedes the old session
        with pytest.raises(UnknownClientError):
            registry.session("a", sessions[0].session_id)
        assert registry.session("a", again.session_id) is again

    asyncio.run(scenario())


def _update(client: int, value: float, samples: int) -> ClientUpdate:
    weights = _weights()
    return ClientUpdate(client, weights.with_flat(torch.full((4,), value)), samples)


def test_feed_streams_into_the_strategy_and_equals_fedavg():
    async def scenario():
        weights = _weights()
        feed = StreamingAggregation(FedAvg(), weights, None, queue_size=1)
        for client, (value, samples) in enumerate([(1.0, 1), (2.0, 1), (4.0, 2)]):
            await feed.add(_update(client, value, samples))
        new, _ = await feed.finish()
        expected, _ = FedAvg().aggregate(
            weights, [_update(0, 1.0, 1), _update(1, 2.0, 1), _update(2, 4.0, 2)], None
        )
        torch.testing.assert_close(new.flat, expected.flat)
        torch.testing.assert_close(new.flat, torch.full((4,), 2.75))
        assert await StreamingAggregation(FedAvg(), weights, None).finish() is None

    asyncio.run(scenario())


def test_live_round_closing_rule_and_reports():
    async def scenario():
        live = LiveRound(3, 3, target=2, feed=StreamingAggregation(FedAvg(), _weights(), None))
        for client in (5, 6, 7):
            live.assignments[client] = Assignment(f"t{client}", client, 3, 3, time.monotonic())
            live.sizes[client] = 10 * client
        assert live.pending == {5, 6, 7} and not live.satisfied()
        live.arrivals.append(Arrival(5, 1.5, 50, LossStats(0.3, 5.0, 50), 16))
        live.drop(6)
        assert live.pending == {7} and not live.satisfied()
        assert live.is_open_for(3) and not live.is_open_for(2)
        live.refuse(7, "NaN", ends_task=True)
        assert live.satisfied()
        reports = {r.client_id: r for r in live.reports()}
        assert reports[5].completed and reports[5].loss.mean_loss == 0.3
        assert not reports[6].completed and not reports[7].completed
        assert reports[7].num_samples == 70
        await asyncio.wait_for(live.wait(5.0), 1.0)  # satisfied: returns at once

    asyncio.run(scenario())


def test_a_link_lost_after_close_but_before_the_record_is_a_dropout():
    live = LiveRound(0, 0, target=1, feed=StreamingAggregation(FedAvg(), _weights(), None))
    for client in (1, 2, 3):
        live.assignments[client] = Assignment(f"t{client}", client, 0, 0, time.monotonic())
    live.arrivals.append(Arrival(1, 0.5, 10, None, 16))
    live.closed = True  # K arrived: 2 and 3 were still training
    live.drop(2, "connection lost before its update arrived")
    assert live.drop_reasons == {2: "connection lost before its update arrived"}
    live.recorded = True  # the record is written: 3 straggled, a later loss changes nothing
    live.drop(3)
    outcomes = {r.client_id: r.outcome for r in live.reports()}
    assert outcomes == {1: "completed", 2: "dropped", 3: "straggled"}


def test_checkpoint_round_trips_and_refuses_another_config(tmp_path):
    config = RunConfig()
    weights = ModelWeights.from_tensors({"w": torch.randn(3)})
    ServerCheckpoint(config_hash(config), 4, 12.5, weights, None, None, ({"round_idx": 0},)).save(
        tmp_path
    )
    back = ServerCheckpoint.load(tmp_path, config)
    assert back.next_round == 4 and back.records == ({"round_idx": 0},)
    torch.testing.assert_close(back.weights.flat, weights.flat)
    moved = RunConfig.model_validate({"output_dir": "elsewhere", "deploy": {"port": 1}})
    assert ServerCheckpoint.load(tmp_path, moved).next_round == 4
    with pytest.raises(CheckpointError, match="another config"):
        ServerCheckpoint.load(tmp_path, RunConfig.model_validate({"seed": 1}))
    with pytest.raises(CheckpointError, match="no checkpoint"):
        ServerCheckpoint.load(tmp_path / "none", config)


def test_device_speed_known_only_when_every_speed_is_given():
    speed = deploy_pb2.DeviceSpeed(
        compute_s_per_sample=0.01, down_bytes_per_s=1e6, up_bytes_per_s=2e5
    )
    assert device_speed(speed) == (0.01, 1e6, 2e5)
    assert device_speed(deploy_pb2.DeviceSpeed(compute_s_per_sample=0.01)) is None
    with pytest.raises(ValueError, match="finite and >= 0"):
        device_speed(deploy_pb2.DeviceSpeed(compute_s_per_sample=-1.0))
    with pytest.raises(ValueError, match="finite and >= 0"):
        device_speed(deploy_pb2.DeviceSpeed(down_bytes_per_s=float("nan")))


def test_task_seed_is_the_simulators_launch_seed():
    assert task_seed(0, 3, 7, 41) == fold_seed([0, 3, 7, 41])
    assert task_seed(0, 3, 7, 41) != task_seed(0, 3, 7, 42)

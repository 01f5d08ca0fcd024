"""What clients upload: compressed sizes on the clock, validated updates, DP accounting."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from fedsys.aggregation.compression import Int8Quantizer, TopK
from fedsys.aggregation.config import DPFedAvgConfig
from fedsys.aggregation.dp import DPFedAvg
from fedsys.aggregation.privacy import PrivacyAccountant
from fedsys.aggregation.validation import UpdateValidator
from fedsys.core.training import LocalTrainer, TrainConfig, TrainResult
from fedsys.core.weights import ModelWeights
from fedsys.selection.oort import OortSelector
from fedsys.sim.engine import Engine, EngineParts
from fedsys.sim.rounds.sync import SyncRounds
from fedsys.traces.fleet import DeviceFleet

from .federation import make_simulator, tiny_dataset, tiny_model


def _slow_uplink_fleet(n: int = 6) -> DeviceFleet:
    return DeviceFleet.always_available(
        n, compute_s_per_sample=1e-3, down_bytes_per_s=1e9, up_bytes_per_s=10.0
    )


def test_int8_upload_is_a_quarter_of_float32_and_the_round_is_shorter_for_it() -> None:
    plain = make_simulator(_slow_uplink_fleet(), SyncRounds(overcommit=1.0), rounds=2)
    squeezed = make_simulator(_slow_uplink_fleet(), SyncRounds(overcommit=1.0), rounds=2)
    squeezed.compressor = Int8Quantizer(chunk_size=4)

    plain_rounds = plain.run().records
    small_rounds = squeezed.run().records

    raw_bytes = 10 * 4  # nn.Linear(4, 2): 8 weights + 2 biases, float32
    int8_bytes = 10 + 4 * math.ceil(10 / 4)  # one byte per value + one float32 scale per chunk
    assert plain_rounds[0].bytes_up == 3 * raw_bytes
    assert small_rounds[0].bytes_up == 3 * int8_bytes
    assert small_rounds[0].duration_s < plain_rounds[0].duration_s
    assert math.isclose(
        plain_rounds[0].duration_s - small_rounds[0].duration_s,
        (raw_bytes - int8_bytes) / 10.0,
        rel_tol=1e-6,
    )


def test_top_k_residual_stays_with_each_client_between_rounds() -> None:
    fleet = DeviceFleet.always_available(3)
    simulator = make_simulator(fleet, SyncRounds(overcommit=1.0), rounds=1)
    engine = Engine(
        EngineParts(
            dataset=simulator.dataset,
            model=simulator.model,
            fleet=fleet,
            selector=simulator.selector,
            strategy=simulator.strategy,
            trainer=simulator.trainer,
            seed=0,
            compressor=TopK(fraction=0.2),
        )
    )

    (launch,) = engine.launch([1], version=0)
    update = engine.train(launch)

    full = simulator.trainer.train(
        simulator.model, engine.weights, *simulator.dataset.client_data(1), seed=[0, 0, 1, 0]
    ).delta
    assert int((update.delta.flat != 0).sum()) == 2  # top 20% of 10 values
    torch.testing.assert_close(update.delta.flat + engine.residuals[1], full.flat)
    assert set(engine.residuals) == {1}


class _NaNForClientZero(LocalTrainer):
    """A faulty device: client 0 sends NaN weights."""

    def train(self, model, start, features, labels, seed) -> TrainResult:  # type: ignore[override]
        result = super().train(model, start, features, labels, seed)
        if isinstance(seed, list) and seed[2] == 0:
            flat = result.delta.flat.clone()
            flat[0] = float("nan")
            return TrainResult(result.delta.with_flat(flat), result.num_samples, result.loss, 1)
        return result


def test_nan_update_is_rejected_logged_and_never_reaches_the_model() -> None:
    simulator = make_simulator(
        DeviceFleet.always_available(4), SyncRounds(overcommit=1.0), rounds=1, clients_per_round=4
    )
    simulator.trainer = _NaNForClientZero(TrainConfig(local_steps=2, batch_size=4, lr=0.1))

    (record,) = simulator.run().records

    assert record.rejected == 1
    assert record.participants == 3
    (rejection,) = record.extra["rejected_updates"]
    assert rejection["client_id"] == 0
    assert "finite" in rejection["reason"] or "nan" in rejection["reason"].lower()
    assert bool(torch.isfinite(simulator.weights_.flat).all())


def test_norm_bound_rejects_large_updates() -> None:
    simulator = make_simulator(DeviceFleet.always_available(4), SyncRounds(), rounds=1)
    simulator.validator = UpdateValidator(max_norm=1e-9)

    (record,) = simulator.run().records

    assert record.participants == 0
    assert record.rejected == 3
    torch.testing.assert_close(simulator.weights_.flat, ModelWeights.from_module(tiny_model()).flat)


def test_dp_fedavg_reports_growing_epsilon_every_round() -> None:
    simulator = make_simulator(DeviceFleet.always_available(10), SyncRounds(), rounds=3)
    simulator.strategy = DPFedAvg(
        clip_norm=1.0,
        accountant=PrivacyAccountant(
            noise_multiplier=1.0, clients_per_round=3, population_size=10, sampling="poisson"
        ),
        target_delta=1e-5,
    )

    epsilons = [r.extra["epsilon"] for r in simulator.run().records]

    assert len(epsilons) == 3
    assert 0 < epsilons[0] < epsilons[1] < epsilons[2]
    assert epsilons[2] == pytest.approx(simulator.strategy.accountant.epsilon(3, 1e-5))


def test_dp_settings_default_to_the_run_sampling() -> None:
    from fedsys.config.loader import parse_config
    from fedsys.parts.builders import complete_strategy

    config = parse_config(
        {"clients_per_round": 7, "dataset": {"num_clients": 70}, "strategy": {"name": "dp_fedavg"}}
    )

    filled = complete_strategy(config)

    assert isinstance(filled, DPFedAvgConfig)
    assert (filled.clients_per_round, filled.population_size) == (7, 70)


def test_oort_learns_sample_counts_and_trace_durations_of_clients_once_available() -> None:
    # Prepare: client 3 is never online, as a device that never connects to a real server.
    fleet = DeviceFleet.always_available(4, compute_s_per_sample=np.array([1.0, 2.0, 3.0, 4.0]))
    fleet = replace(
        fleet,
        period_s=np.full(4, 100.0),
        avail_offsets=np.array([0, 1, 2, 3, 3]),
        avail_starts=np.zeros(3),
        avail_ends=np.full(3, 100.0),
    )
    selector = OortSelector(seed=0)
    engine = Engine(
        EngineParts(
            dataset=tiny_dataset(4),
            model=tiny_model(),
            fleet=fleet,
            selector=selector,
            strategy=make_simulator(fleet, SyncRounds()).strategy,
            trainer=LocalTrainer(TrainConfig(local_steps=2, batch_size=4)),
            seed=0,
        )
    )
    assert engine.selector_state.num_clients == 0
    # Act
    engine.select(0, 2)
    # Assert
    state = engine.selector_state
    assert state.num_clients == 3  # nothing known of client 3
    np.testing.assert_array_equal(state.num_samples, [12, 12, 12])
    assert np.all(np.diff(state.prior_duration_s) > 0)

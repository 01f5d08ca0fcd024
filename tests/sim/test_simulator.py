"""End-to-end runs of the simulator built from configs, with real training."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import yaml

from fedsys.config.loader import ConfigError, apply_overrides, parse_config
from fedsys.config.resolve import default_config_text
from fedsys.core.weights import ModelWeights
from fedsys.metrics.records import RoundRecord
from fedsys.sim.simulator import Simulator
from fedsys.traces import MOBILENET_V2_BYTES


def _quickstart(**overrides: object):
    raw = yaml.safe_load(default_config_text())
    return parse_config(apply_overrides(raw, dict(overrides)))


def test_fedavg_on_skewed_digits_reaches_85_percent_within_the_round_budget() -> None:
    config = _quickstart()
    assert config.dataset.name == "digits"
    assert config.dataset.num_clients == 100
    assert config.dataset.partition.kind == "dirichlet"
    assert config.dataset.partition.alpha == 0.1

    result = Simulator.from_config(config).run()

    assert len(result.records) == config.rounds
    assert result.best_accuracy is not None and result.best_accuracy >= 0.85
    time_to_target = result.time_to_accuracy(0.85)
    assert time_to_target is not None and time_to_target > 0


def test_records_are_ordered_on_the_virtual_clock_and_reach_the_callback() -> None:
    config = _quickstart(rounds=6, **{"eval.every": 3})
    seen: list[RoundRecord] = []

    result = Simulator.from_config(config).run(on_round=seen.append)

    assert [r.round_idx for r in seen] == list(range(6))
    assert seen == list(result.records)
    for earlier, later in pairwise(seen):
        assert later.start_s >= earlier.end_s
    assert all(r.participants == config.clients_per_round for r in seen)
    assert [r.accuracy is not None for r in seen] == [False, False, True] * 2
    assert all(r.wall_s > 0 for r in seen)


def test_same_seed_same_run_and_another_seed_differs() -> None:
    def run(seed: int) -> list[tuple[float, float | None]]:
        result = Simulator.from_config(_quickstart(rounds=5, seed=seed)).run()
        return [(r.end_s, r.accuracy) for r in result.records]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_eval_selection_reports_participant_accuracy_next_to_the_population() -> None:
    config = _quickstart(rounds=2, **{"eval.every": 1, "eval.selection": "category"})

    records = Simulator.from_config(config).run().records

    assert len(records) == 2
    for record in records:
        assert record.accuracy is not None
        assert 0.0 <= record.extra["participant_accuracy"] <= 1.0
        assert record.extra["participant_samples"] == 20 * 10
        assert record.extra["eval_participants"] >= 1


def test_category_eval_can_plan_with_private_device_reported_counts() -> None:
    config = _quickstart(rounds=1, **{
        "eval.every": 1, "eval.selection": "category", "eval.category_counts": "reported",
        "eval.counts_epsilon": 1.0,
    })
    simulator = Simulator.from_config(config)
    planned = np.asarray(simulator.evaluator.category.client_counts)
    truth = simulator.dataset.test_label_counts()
    assert planned.shape == truth.shape and not np.array_equal(planned, truth)

    records = simulator.run().records

    assert 0.0 <= records[-1].extra["participant_accuracy"] <= 1.0
    assert records[-1].extra["participant_samples"] <= 20 * 10


def test_transfer_cost_ratio_reference_charges_transfers_as_mobilenet() -> None:
    real = Simulator.from_config(_quickstart(rounds=1))
    charged = Simulator.from_config(
        _quickstart(rounds=1, **{"devices.transfer_cost_ratio": "reference"})
    )

    ratio = MOBILENET_V2_BYTES / ModelWeights.from_module(real.model).num_bytes
    np.testing.assert_allclose(charged.fleet.down_bytes_per_s, real.fleet.down_bytes_per_s / ratio)
    np.testing.assert_allclose(charged.fleet.up_bytes_per_s, real.fleet.up_bytes_per_s / ratio)
    np.testing.assert_allclose(charged.fleet.compute_s_per_sample, real.fleet.compute_s_per_sample)
    assert charged.run().records[0].duration_s > real.run().records[0].duration_s


def test_transfer_cost_ratio_rejects_unknown_words_and_non_positive_values() -> None:
    for bad in ("mobilenet", 0.0):
        with pytest.raises(ConfigError, match=r"transfer_cost_ratio: .*positive number or 'ref"):
            _quickstart(**{"devices.transfer_cost_ratio": bad})

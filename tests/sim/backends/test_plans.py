"""Batch plans reproduce LocalTrainer's mini-batches and pad ragged clients with a mask."""

from __future__ import annotations

import numpy as np
import torch

from fedsys.core.training import TrainConfig, batch_order, fold_seed
from fedsys.sim.backends.plans import bucket_key, client_plan, pad_chunk


def test_a_plan_visits_the_samples_the_trainer_visits() -> None:
    config = TrainConfig(local_steps=4, batch_size=5)
    generator = torch.Generator()
    generator.manual_seed(fold_seed([1, 2, 3]))
    order, sizes = batch_order(7, config, generator)

    plan = client_plan(config, offset=100, num_samples=7, seed=(1, 2, 3))

    np.testing.assert_array_equal(plan.rows.numpy(), order.numpy() + 100)
    assert plan.sizes == tuple(sizes) == (5, 5, 5, 5)


def test_padding_masks_short_batches_and_finished_clients() -> None:
    config = TrainConfig(local_steps=None, local_epochs=1, batch_size=4)
    small = client_plan(config, offset=0, num_samples=6, seed=(0,))  # batches 4, 2
    large = client_plan(config, offset=10, num_samples=12, seed=(1,))  # batches 4, 4, 4

    chunk = pad_chunk([small, large])

    assert chunk.rows.shape == (3, 2, 4)
    np.testing.assert_array_equal(chunk.counts.numpy(), [[4, 4], [2, 4], [0, 4]])
    real = chunk.rows[chunk.mask.bool()]
    assert sorted(real[real < 10].tolist()) == list(range(6))
    assert sorted(real[real >= 10].tolist()) == list(range(10, 22))
    assert bucket_key(small) == (2, 4) and bucket_key(large) == (3, 4)

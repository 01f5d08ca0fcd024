import math

import numpy as np
import pytest
import torch
from torch import nn

from fedsys.core.training import LocalTrainer, TrainConfig, evaluate
from fedsys.core.weights import ModelWeights


def _problem(seed: int = 0, n: int = 40) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(n, 5, generator=gen)
    labels = (features[:, 0] > 0).long()
    torch.manual_seed(seed)
    return nn.Linear(5, 2), features, labels


def test_training_lowers_the_loss_and_returns_a_delta() -> None:
    model, x, y = _problem()
    start = ModelWeights.from_module(model)
    before = evaluate(model, start, x, y)

    result = LocalTrainer(TrainConfig(local_steps=50, batch_size=10, lr=0.5)).train(
        model, start, x, y, seed=1
    )

    after = evaluate(model, start + result.delta, x, y)
    assert after.loss < before.loss
    assert result.steps == 50
    assert result.num_samples == 40
    assert result.loss.samples_seen == 500


def test_loss_statistics_cover_every_sample_seen() -> None:
    model, x, y = _problem()
    start = ModelWeights.from_module(model)
    trainer = LocalTrainer(TrainConfig(local_steps=1, batch_size=40, lr=1e-9))

    result = trainer.train(model, start, x, y, seed=0)

    per_sample = nn.functional.cross_entropy(model(x), y, reduction="none").detach()
    np.testing.assert_allclose(result.loss.mean_loss, float(per_sample.mean()), rtol=1e-4)
    np.testing.assert_allclose(result.loss.sum_sq_loss, float(per_sample.pow(2).sum()), rtol=1e-4)
    assert result.loss.rms_loss == pytest.approx(
        math.sqrt(float(per_sample.pow(2).mean())), rel=1e-4
    )


def test_custom_per_sample_loss_trains_like_the_fused_default() -> None:
    model, x, y = _problem()
    start = ModelWeights.from_module(model)
    config = TrainConfig(local_steps=5, batch_size=8, lr=0.3)

    fused = LocalTrainer(config).train(model, start, x, y, seed=3)
    custom = LocalTrainer(
        config, loss_fn=lambda out, t: nn.functional.cross_entropy(out, t, reduction="none")
    ).train(model, start, x, y, seed=3)

    torch.testing.assert_close(custom.delta.flat, fused.delta.flat, rtol=1e-5, atol=1e-6)
    assert custom.loss.mean_loss == pytest.approx(fused.loss.mean_loss, rel=1e-6)
    assert custom.loss.sum_sq_loss == pytest.approx(fused.loss.sum_sq_loss, rel=1e-6)


def test_same_seed_same_delta_different_seed_different_delta() -> None:
    model, x, y = _problem()
    start = ModelWeights.from_module(model)
    trainer = LocalTrainer(TrainConfig(local_steps=5, batch_size=8))

    a = trainer.train(model, start, x, y, seed=[3, 1, 7])
    b = trainer.train(model, start, x, y, seed=[3, 1, 7])
    c = trainer.train(model, start, x, y, seed=[3, 1, 8])

    torch.testing.assert_close(a.delta.flat, b.delta.flat)
    assert not torch.allclose(a.delta.flat, c.delta.flat)


def test_epochs_mode_visits_each_sample_once_per_epoch() -> None:
    model, x, y = _problem(n=23)
    config = TrainConfig(local_steps=None, local_epochs=2, batch_size=5)
    result = LocalTrainer(config).train(model, ModelWeights.from_module(model), x, y, seed=0)
    assert result.loss.samples_seen == 46
    assert result.steps == 10
    assert config.samples_processed(23) == 46


def test_proximal_term_keeps_weights_closer_to_start() -> None:
    model, x, y = _problem()
    start = ModelWeights.from_module(model)
    plain = LocalTrainer(TrainConfig(local_steps=30, lr=0.5)).train(model, start, x, y, seed=0)
    prox = LocalTrainer(TrainConfig(local_steps=30, lr=0.5, proximal_mu=1.0)).train(
        model, start, x, y, seed=0
    )
    assert prox.delta.norm() < 0.7 * plain.delta.norm()


def test_invalid_settings_name_the_setting() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=-1.0)
    model, x, y = _problem()
    with pytest.raises(ValueError, match="no samples"):
        LocalTrainer().train(model, ModelWeights.from_module(model), x[:0], y[:0], seed=0)


def test_samples_processed_in_steps_mode_caps_batch_at_dataset_size() -> None:
    config = TrainConfig(local_steps=10, batch_size=20)
    assert config.samples_processed(7) == 70
    assert config.samples_processed(100) == 200
    assert config.samples_processed(0) == 0

"""The vectorized backend trains like the sequential reference, within float32 rounding."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from fedsys.core.training import LocalTrainer, TrainConfig
from fedsys.core.weights import ModelWeights
from fedsys.sim.backends import SequentialBackend, VectorizedBackend
from fedsys.sim.backends.plans import bucket_key, client_plan
from fedsys.sim.backends.vectorized import FallbackSession, VectorizedSession, chunk_order
from fedsys.sim.rounds.buffered import BufferedAsyncRounds
from tests.sim.backends.parts import SIZES, jobs_for, simulator, small_mlp, training_parts

RTOL, ATOL = 1e-4, 1e-5
"""The stated tolerance of vectorized vs sequential (see fedsys/sim/backends/vectorized.py)."""

CONFIGS = {
    "steps": TrainConfig(local_steps=6, batch_size=8, lr=0.3),
    "momentum-decay-prox": TrainConfig(
        local_steps=6, batch_size=8, lr=0.1, momentum=0.9, weight_decay=1e-2, proximal_mu=0.5
    ),
    "epochs": TrainConfig(local_steps=None, local_epochs=2, batch_size=8, lr=0.3),
}


def _assert_trains_as_sequential(parts, chunk_size: int = 5) -> VectorizedSession:  # type: ignore[no-untyped-def]
    clients = list(range(len(SIZES)))
    jobs = jobs_for(parts.model, clients)

    reference = dict(SequentialBackend().open(parts).train(jobs))
    session = VectorizedBackend(chunk_size=chunk_size).open(parts)
    batched = list(session.train(jobs))

    assert isinstance(session, VectorizedSession)
    assert sorted(i for i, _ in batched) == clients
    for index, result in batched:
        expected = reference[index]
        torch.testing.assert_close(result.delta.flat, expected.delta.flat, rtol=RTOL, atol=ATOL)
        assert result.delta.norm() > 0
        assert result.steps == expected.steps
        assert result.num_samples == expected.num_samples == SIZES[jobs[index].client_id]
        assert result.loss.samples_seen == expected.loss.samples_seen
        np.testing.assert_allclose(result.loss.mean_loss, expected.loss.mean_loss, rtol=RTOL)
        np.testing.assert_allclose(result.loss.sum_sq_loss, expected.loss.sum_sq_loss, rtol=RTOL)
    return session


@pytest.mark.parametrize("name", CONFIGS)
def test_each_client_trains_as_sequential_with_ragged_sizes(name: str) -> None:
    session = _assert_trains_as_sequential(training_parts(small_mlp(), CONFIGS[name]))
    assert session.stacked.path == "layers"


class _ResidualMlp(nn.Module):
    """A custom ``forward``: the batched common layers do not know it, ``vmap`` does."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.inner = nn.Linear(6, 6)
            self.out = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(x + torch.tanh(self.inner(x)))


def _conv_net() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Unflatten(1, (1, 6)),
            nn.Conv1d(1, 4, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Flatten(),
            nn.LayerNorm(12),
            nn.Linear(12, 3),
        )


def _partly_frozen_mlp() -> nn.Module:
    model = small_mlp()
    model[1].weight.requires_grad_(False)
    return model


@pytest.mark.parametrize(
    ("model", "path"),
    [(_conv_net, "layers"), (_partly_frozen_mlp, "layers"), (_ResidualMlp, "vmap")],
)
def test_both_batched_paths_train_as_sequential(model, path: str) -> None:  # type: ignore[no-untyped-def]
    parts = training_parts(model(), CONFIGS["momentum-decay-prox"])
    session = _assert_trains_as_sequential(parts)
    assert session.stacked.path == path


def test_frozen_parameters_stay_where_they_start() -> None:
    parts = training_parts(_partly_frozen_mlp(), CONFIGS["momentum-decay-prox"])
    results = dict(VectorizedBackend().open(parts).train(jobs_for(parts.model, [3, 7])))
    assert sorted(results) == [0, 1]
    for result in results.values():
        state = result.delta.to_dict()
        assert torch.count_nonzero(state["1.weight"]) == 0
        assert torch.count_nonzero(state["1.bias"]) > 0


def test_jobs_from_different_starts_train_from_their_own_weights() -> None:
    parts = training_parts(small_mlp(), CONFIGS["steps"])
    other = ModelWeights.from_module(small_mlp(seed=7))
    jobs = jobs_for(parts.model, [4, 5])
    jobs[1] = type(jobs[1])(client_id=5, start=other, seed=jobs[1].seed)

    reference = dict(SequentialBackend().open(parts).train(jobs))
    batched = dict(VectorizedBackend().open(parts).train(jobs))

    for index in (0, 1):
        torch.testing.assert_close(
            batched[index].delta.flat, reference[index].delta.flat, rtol=RTOL, atol=ATOL
        )


def _assert_runs_agree(sequential, vectorized, rounds: int) -> None:
    seq, vec = sequential.run(), vectorized.run()
    assert len(seq.records) == len(vec.records) == rounds
    assert [r.extra["clients"] for r in vec.records] == [r.extra["clients"] for r in seq.records]
    torch.testing.assert_close(
        vectorized.weights_.flat, sequential.weights_.flat, rtol=RTOL, atol=ATOL
    )
    for mine, theirs in zip(vec.records, seq.records, strict=True):
        assert mine.participants == theirs.participants
        assert abs(mine.accuracy - theirs.accuracy) <= 1 / 300 + 1e-12
        np.testing.assert_allclose(mine.train_loss, theirs.train_loss, rtol=RTOL)
        assert mine.end_s == theirs.end_s


def test_sync_runs_agree_with_sequential() -> None:
    config = CONFIGS["momentum-decay-prox"]
    _assert_runs_agree(
        simulator(SequentialBackend(), config=config),
        simulator(VectorizedBackend(chunk_size=3), config=config),
        rounds=4,
    )


def test_async_runs_agree_with_sequential() -> None:
    def mode() -> BufferedAsyncRounds:
        return BufferedAsyncRounds(max_concurrency=6, buffer_size=3, max_staleness=4)

    _assert_runs_agree(
        simulator(SequentialBackend(), round_mode=mode(), rounds=6),
        simulator(VectorizedBackend(), round_mode=mode(), rounds=6),
        rounds=6,
    )


class _Branchy(nn.Module):
    """Data-dependent control flow: vmap cannot decide the branch for a whole batch."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer(x)
        return out * 2 if out.sum() > 0 else out


class _OwnTrainer(LocalTrainer):
    """A trainer with its own training loop, which the batched path cannot know."""

    def train(self, model, start, features, labels, seed):  # type: ignore[no-untyped-def]
        return super().train(model, start, features, labels, seed)


def _batchnorm_mlp() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


@pytest.mark.parametrize(
    ("model", "trainer", "reason"),
    [
        (_batchnorm_mlp, LocalTrainer, "BatchNorm1d"),
        (_Branchy, LocalTrainer, "vmap could not run the model"),
        (small_mlp, _OwnTrainer, "_OwnTrainer overrides LocalTrainer.train"),
    ],
)
def test_a_model_vmap_cannot_batch_falls_back_with_the_reason(
    model, trainer, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = TrainConfig(local_steps=3, batch_size=4, lr=0.1)
    parts = training_parts(model(), config)
    parts = type(parts)(
        model=parts.model, dataset=parts.dataset, trainer=trainer(config), device=parts.device
    )
    jobs = jobs_for(parts.model, [1, 6, 7])

    with caplog.at_level(logging.WARNING, logger="fedsys.sim.backends.vectorized"):
        session = VectorizedBackend().open(parts)
    results = dict(session.train(jobs))

    assert isinstance(session, FallbackSession)
    assert reason in session.reason
    assert reason in caplog.text and "falls back to sequential" in caplog.text
    reference = dict(SequentialBackend().open(parts).train(jobs))
    assert sorted(results) == sorted(reference) == [0, 1, 2]
    for index, result in results.items():
        assert torch.equal(result.delta.flat, reference[index].delta.flat)


def test_chunks_are_bounded_and_never_mix_step_counts() -> None:
    config = CONFIGS["epochs"]
    plans = [client_plan(config, 0, size, (0, i)) for i, size in enumerate(SIZES)]
    order = sorted(range(len(plans)), key=lambda i: bucket_key(plans[i]))

    chunks = list(chunk_order(order, plans, size=3))

    assert sorted(i for chunk in chunks for i in chunk) == list(range(len(SIZES)))
    assert all(1 <= len(chunk) <= 3 for chunk in chunks)
    assert all(len({plans[i].steps for i in chunk}) == 1 for chunk in chunks)

"""The Ray backend on a real local Ray cluster (2 CPUs) equals sequential bit for bit."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import ray
import torch

from fedsys.sim.backends import RayBackend, SequentialBackend
from fedsys.sim.backends.ray_cluster import RaySession
from fedsys.sim.rounds.buffered import BufferedAsyncRounds
from tests.sim.backends.parts import SIZES, jobs_for, simulator, small_mlp, training_parts
from tests.sim.backends.test_vectorized import ATOL, CONFIGS, RTOL

pytestmark = pytest.mark.timeout(180)


def test_a_backend_starts_its_own_cluster_and_each_update_is_identical() -> None:
    assert not ray.is_initialized()
    parts = training_parts(small_mlp(), CONFIGS["momentum-decay-prox"])
    jobs = jobs_for(parts.model, list(range(len(SIZES))))
    reference = list(SequentialBackend().open(parts).train(jobs))

    with RayBackend(workers=2, chunk_size=5).open(parts) as session:
        assert ray.is_initialized() and ray.cluster_resources()["CPU"] == 2
        assert isinstance(session, RaySession) and len(session.actors) == 2
        results = list(session.train(jobs))

    assert not ray.is_initialized()
    assert len(results) == len(reference) == len(SIZES)
    assert [i for i, _ in results] == [i for i, _ in reference]
    for (_, mine), (_, theirs) in zip(results, reference, strict=True):
        assert torch.equal(mine.delta.flat, theirs.delta.flat)
        assert mine.loss == theirs.loss and mine.steps == theirs.steps


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """A local two-CPU cluster for the runs below, always shut down (workers included)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="error")
    try:
        yield
    finally:
        ray.shutdown()


def test_a_sync_run_equals_sequential(cluster: None) -> None:
    seq = simulator(SequentialBackend(), rounds=3)
    dist = simulator(RayBackend(workers=2), rounds=3)
    expected, result = seq.run(), dist.run()

    assert torch.equal(dist.weights_.flat, seq.weights_.flat)
    assert [r.extra["clients"] for r in result.records] == [
        r.extra["clients"] for r in expected.records
    ]
    assert [r.train_loss for r in result.records] == [r.train_loss for r in expected.records]
    assert ray.is_initialized()  # a cluster the backend joined is left running


def test_an_async_run_on_vectorized_actors_agrees_within_tolerance(cluster: None) -> None:
    def mode() -> BufferedAsyncRounds:
        return BufferedAsyncRounds(max_concurrency=6, buffer_size=3, max_staleness=4)

    seq = simulator(SequentialBackend(), round_mode=mode(), rounds=4)
    dist = simulator(
        RayBackend(workers=2, worker_backend="vectorized"), round_mode=mode(), rounds=4
    )
    expected, result = seq.run(), dist.run()

    torch.testing.assert_close(dist.weights_.flat, seq.weights_.flat, rtol=RTOL, atol=ATOL)
    assert [r.extra["clients"] for r in result.records] == [
        r.extra["clients"] for r in expected.records
    ]
    np.testing.assert_allclose(
        [r.train_loss for r in result.records], [r.train_loss for r in expected.records], rtol=RTOL
    )

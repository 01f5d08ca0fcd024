"""Built-in offline datasets, the central-to-federated split and LEAF Synthetic."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from fedsys.data.builtin import (
    CentralDataset,
    _digits_arrays,
    load_digits,
    load_mnist1d,
    partition_central,
    split_test_like_train,
)
from fedsys.data.federated import FederatedDataset
from fedsys.data.synthetic import make_synthetic

MNIST1D_SAMPLES = 300


@pytest.fixture(scope="module")
def digits() -> CentralDataset:
    return load_digits(seed=0)


@pytest.fixture(scope="module")
def mnist1d() -> CentralDataset:
    return load_mnist1d(seed=0, num_samples=MNIST1D_SAMPLES)


def _toy_central(num_train: int = 400, num_test: int = 200, num_classes: int = 4) -> CentralDataset:
    rng = np.random.default_rng(0)
    return CentralDataset(
        name="toy",
        x_train=rng.normal(size=(num_train, 3)).astype(np.float32),
        y_train=rng.integers(0, num_classes, num_train),
        x_test=rng.normal(size=(num_test, 3)).astype(np.float32),
        y_test=rng.integers(0, num_classes, num_test),
        num_classes=num_classes,
    )


def _assert_cover(offsets: np.ndarray, num_samples: int, num_clients: int) -> None:
    assert len(offsets) == num_clients + 1
    assert offsets[0] == 0 and offsets[-1] == num_samples
    assert np.all(np.diff(offsets) >= 0)


def test_digits_shapes_scale_and_stratified_split(digits: CentralDataset) -> None:
    assert digits.name == "digits"
    assert digits.num_classes == 10
    assert digits.x_train.shape == (1797 - 359, 64)
    assert digits.x_test.shape == (359, 64)
    assert digits.x_train.dtype == np.float32 and digits.y_train.dtype == np.int64
    assert digits.x_train.min() == 0.0 and digits.x_train.max() == 1.0
    train_counts = np.bincount(digits.y_train, minlength=10)
    test_counts = np.bincount(digits.y_test, minlength=10)
    # Every class loses 20% of its samples to the test set, up to rounding.
    np.testing.assert_allclose(test_counts, 0.2 * (train_counts + test_counts), atol=1.0)


def test_digits_read_from_sklearns_file_are_sklearns_digits() -> None:
    from sklearn.datasets import load_digits as sklearn_digits

    pixels, labels = _digits_arrays()
    bunch = sklearn_digits()

    np.testing.assert_array_equal(pixels, bunch.data)
    np.testing.assert_array_equal(labels, bunch.target)
    assert labels.dtype == np.int64


def test_digits_split_is_seeded(digits: CentralDataset) -> None:
    again = load_digits(seed=0)
    other = load_digits(seed=1, test_fraction=0.5)

    np.testing.assert_array_equal(again.x_test, digits.x_test)
    np.testing.assert_array_equal(again.y_train, digits.y_train)
    assert len(other.y_test) == round(0.5 * 1797)
    assert not np.array_equal(other.x_test[:359], digits.x_test)


def test_mnist1d_shapes_classes_and_determinism(mnist1d: CentralDataset) -> None:
    assert mnist1d.name == "mnist1d"
    assert mnist1d.x_train.shape == (0.8 * MNIST1D_SAMPLES, 40)
    assert mnist1d.x_test.shape == (0.2 * MNIST1D_SAMPLES, 40)
    assert mnist1d.x_train.dtype == np.float32
    np.testing.assert_array_equal(np.bincount(mnist1d.y_test, minlength=10), 6)
    np.testing.assert_array_equal(np.bincount(mnist1d.y_train, minlength=10), 24)
    all_x = np.concatenate([mnist1d.x_train, mnist1d.x_test])
    np.testing.assert_allclose(all_x.mean(), 0.0, atol=1e-5)  # generator standardises
    np.testing.assert_allclose(all_x.std(), 1.0, atol=1e-4)

    again = load_mnist1d(seed=0, num_samples=MNIST1D_SAMPLES)
    other = load_mnist1d(seed=1, num_samples=MNIST1D_SAMPLES)

    np.testing.assert_array_equal(again.x_train, mnist1d.x_train)
    np.testing.assert_array_equal(again.y_test, mnist1d.y_test)
    assert np.abs(other.x_train - mnist1d.x_train).max() > 0.5


def test_mnist1d_leaves_global_rngs_untouched() -> None:
    np.random.seed(11)
    random.seed(12)
    expected = (np.random.random(), random.random())
    np.random.seed(11)
    random.seed(12)

    load_mnist1d(seed=3, num_samples=20, test_fraction=0.5)

    assert (np.random.random(), random.random()) == expected


@pytest.mark.parametrize("num_samples", [0, 15, True])
def test_mnist1d_rejects_bad_num_samples(num_samples: int) -> None:
    with pytest.raises(ValueError, match="num_samples"):
        load_mnist1d(seed=0, num_samples=num_samples)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, float("nan")])
def test_loaders_reject_bad_test_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(seed=0, test_fraction=fraction)


def test_central_dataset_validates_dtypes_and_labels() -> None:
    toy = _toy_central()
    with pytest.raises(ValueError, match="float32"):
        CentralDataset(
            "bad", toy.x_train.astype(np.float64), toy.y_train, toy.x_test, toy.y_test, 4
        )
    with pytest.raises(ValueError, match="outside"):
        CentralDataset("bad", toy.x_train, toy.y_train, toy.x_test, toy.y_test, 3)
    with pytest.raises(ValueError, match="rows"):
        CentralDataset("bad", toy.x_train[:5], toy.y_train, toy.x_test, toy.y_test, 4)


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("iid", {}),
        ("dirichlet", {"alpha": 0.3}),
        ("quantity", {"sigma": 1.0}),
        ("quantity_skew", {"sigma": 1.0}),
    ],
)
def test_partition_central_covers_train_and_test(
    digits: CentralDataset, kind: str, extra: dict[str, float]
) -> None:
    fed = partition_central(digits, kind, num_clients=100, seed=0, min_samples=2, **extra)

    assert isinstance(fed, FederatedDataset)
    assert fed.name == f"digits-{kind}"
    assert fed.num_clients == 100 and fed.num_classes == 10
    assert fed.client_sizes.min() >= 2
    _assert_cover(fed.offsets, len(digits.y_train), 100)
    assert fed.test_offsets is not None
    _assert_cover(fed.test_offsets, len(digits.y_test), 100)
    # Same samples, regrouped: the label multisets are unchanged.
    np.testing.assert_array_equal(
        np.bincount(fed.labels.numpy(), minlength=10), np.bincount(digits.y_train, minlength=10)
    )
    np.testing.assert_array_equal(
        np.bincount(fed.test_labels.numpy(), minlength=10),
        np.bincount(digits.y_test, minlength=10),
    )


def test_partition_central_test_split_follows_client_labels(digits: CentralDataset) -> None:
    fed = partition_central(digits, "dirichlet", num_clients=20, seed=1, alpha=0.1)

    train_counts = fed.label_counts()
    test_counts = np.zeros_like(train_counts)
    for client in range(fed.num_clients):
        _, labels = fed.client_test_data(client)
        test_counts[client] = np.bincount(labels.numpy(), minlength=10)

    # A client never gets test samples of a class it has no train samples of ...
    assert np.all(test_counts[train_counts == 0] == 0)
    # ... and each class's test samples go out in proportion to train counts (± rounding).
    expected = train_counts / train_counts.sum(0) * test_counts.sum(0)
    np.testing.assert_allclose(test_counts, expected, atol=1.0)


def test_split_test_like_train_handles_unseen_classes() -> None:
    train_labels = np.array([0, 0, 1, 1, 1, 1])
    partition = [np.array([0, 1]), np.array([2, 3, 4, 5])]
    test_labels = np.array([0, 1, 1, 2, 2, 2])  # class 2 never seen in training

    split = split_test_like_train(train_labels, partition, test_labels, 3, seed=0)

    np.testing.assert_array_equal(np.sort(np.concatenate(split)), np.arange(6))
    assert 0 in split[0]  # class 0: only client 0 trains on it
    assert {1, 2} <= set(split[1].tolist())  # class 1: only client 1
    # class 2: nobody trains on it, so it goes by client size (2:4 of 3 samples → 1:2).
    np.testing.assert_array_equal([len(split[0]), len(split[1])], [2, 4])


def test_partition_central_is_seeded() -> None:
    toy = _toy_central()

    first = partition_central(toy, "dirichlet", 10, seed=4, alpha=0.5)
    again = partition_central(toy, "dirichlet", 10, seed=4, alpha=0.5)
    other = partition_central(toy, "dirichlet", 10, seed=5, alpha=0.5)

    np.testing.assert_array_equal(first.features.numpy(), again.features.numpy())
    np.testing.assert_array_equal(first.test_labels.numpy(), again.test_labels.numpy())
    np.testing.assert_array_equal(first.test_offsets, again.test_offsets)
    assert not np.array_equal(first.offsets, other.offsets)


@pytest.mark.parametrize(
    ("kind", "extra", "message"),
    [
        ("dirichlet", {}, "needs alpha"),
        ("quantity", {}, "needs sigma"),
        ("iid", {"alpha": 0.5}, "alpha is not used"),
        ("dirichlet", {"alpha": 0.5, "sigma": 1.0}, "sigma is not used"),
        ("natural", {}, "kind must be one of"),
    ],
)
def test_partition_central_checks_kind_arguments(
    kind: str, extra: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        partition_central(_toy_central(), kind, 10, seed=0, **extra)


def test_partition_central_iid_checks_min_samples() -> None:
    with pytest.raises(ValueError, match="min_samples=50"):
        partition_central(_toy_central(), "iid", 10, seed=0, min_samples=50)


def _label_skew(fed: FederatedDataset) -> float:
    """Mean total-variation distance of client label mixes from the global one."""
    counts = fed.label_counts().astype(np.float64)
    client_mix = counts / counts.sum(axis=1, keepdims=True)
    global_mix = counts.sum(axis=0) / counts.sum()
    return float(0.5 * np.abs(client_mix - global_mix).sum(axis=1).mean())


def _input_spread(fed: FederatedDataset) -> float:
    means = np.stack([fed.client_data(k)[0].numpy().mean(axis=0) for k in range(fed.num_clients)])
    return float(means.std(axis=0).mean())


def test_synthetic_shapes_sizes_and_per_client_test() -> None:
    fed = make_synthetic(1.0, 1.0, num_clients=30, seed=0, max_client_samples=300)

    assert fed.name == "synthetic(1,1)"
    assert fed.input_shape == (60,) and fed.num_classes == 10
    assert fed.num_clients == 30
    assert fed.test_offsets is not None
    totals = fed.client_sizes + np.diff(fed.test_offsets)
    assert totals.min() >= 50 and totals.max() <= 300
    np.testing.assert_array_equal(np.diff(fed.test_offsets), np.round(0.1 * totals))
    assert len(fed.test_labels) == int(np.diff(fed.test_offsets).sum())
    assert int(fed.labels.max()) < 10 and int(fed.labels.min()) >= 0


def test_synthetic_is_seeded_and_prefix_stable() -> None:
    small = make_synthetic(0.5, 0.5, num_clients=5, seed=3, max_client_samples=100)
    large = make_synthetic(0.5, 0.5, num_clients=8, seed=3, max_client_samples=100)
    other = make_synthetic(0.5, 0.5, num_clients=5, seed=4, max_client_samples=100)

    for client in range(5):
        for a, b in zip(
            small.client_data(client) + small.client_test_data(client),
            large.client_data(client) + large.client_test_data(client),
            strict=True,
        ):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not torch.equal(small.client_data(0)[0][:10], other.client_data(0)[0][:10])


def test_synthetic_heterogeneity_grows_with_alpha_and_beta() -> None:
    iid = make_synthetic(0.0, 0.0, num_clients=30, seed=0, iid=True, max_client_samples=300)
    homogeneous = make_synthetic(0.0, 0.0, num_clients=30, seed=0, max_client_samples=300)
    skewed = make_synthetic(1.0, 1.0, num_clients=30, seed=0, max_client_samples=300)

    assert iid.name == "synthetic-iid(0)"
    assert _label_skew(iid) < 0.2
    assert _label_skew(skewed) > 0.6
    assert _input_spread(iid) < 0.05
    assert _input_spread(skewed) > 1.15 * _input_spread(homogeneous)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": -1.0}, "alpha"),
        ({"beta": float("inf")}, "beta"),
        ({"num_clients": 0}, "num_clients"),
        ({"num_classes": 1}, "num_classes"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"min_client_samples": 0}, "min_client_samples"),
        ({"max_client_samples": 10}, "max_client_samples"),
        ({"seed": -3}, "seed"),
    ],
)
def test_synthetic_rejects_bad_arguments(kwargs: dict[str, float], message: str) -> None:
    arguments: dict[str, float] = {"alpha": 1.0, "beta": 1.0, "num_clients": 3, "seed": 0}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        make_synthetic(**arguments)  # type: ignore[arg-type]

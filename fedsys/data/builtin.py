"""Built-in datasets that need no download, and their split across simulated clients.

``load_digits`` and ``load_mnist1d`` give a :class:`CentralDataset` (one train and one
test array); :func:`partition_central` turns it into a :class:`FederatedDataset`.
:func:`fedsys.data.synthetic.make_synthetic` (re-exported here) is federated by
construction.
"""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedsys.data._sampling import Stream, apportion, check_seed, group_by_owner, rng_for
from fedsys.data.federated import FederatedDataset
from fedsys.data.partition import dirichlet_partition, iid_partition, quantity_skew_partition
from fedsys.data.synthetic import make_synthetic

__all__ = ["CentralDataset", "load_digits", "load_mnist1d", "make_synthetic", "partition_central"]

MNIST1D_NUM_CLASSES = 10
DIGITS_SAMPLES = 1797


@dataclass(frozen=True, eq=False)
class CentralDataset:
    """A labelled dataset in one place, before it is split across clients.

    Parameters
    ----------
    name
        Dataset name for logs.
    x_train, x_test
        float32 features, one row per sample.
    y_train, y_test
        int64 class ids in ``[0, num_classes)``.
    num_classes
        Number of label classes.

    Raises
    ------
    ValueError
        If dtypes, lengths or label ranges are inconsistent.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        for split, x, y in (
            ("train", self.x_train, self.y_train),
            ("test", self.x_test, self.y_test),
        ):
            if x.dtype != np.float32 or y.dtype != np.int64:
                raise ValueError(
                    f"x_{split} must be float32 and y_{split} int64, got {x.dtype} and {y.dtype}"
                )
            if y.ndim != 1 or x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"x_{split} has {x.shape[0]} rows but y_{split} has shape {y.shape}"
                )
            if len(y) and (y.min() < 0 or y.max() >= self.num_classes):
                raise ValueError(f"y_{split} has labels outside [0, {self.num_classes})")


def load_digits(seed: int, test_fraction: float = 0.2) -> CentralDataset:
    """The scikit-learn 8×8 handwritten digits (1,797 samples, 10 classes), offline.

    Pixels are scaled from ``0..16`` to ``[0, 1]``; each sample is a flat 64-vector.

    Parameters
    ----------
    seed
        Seed of the stratified train/test split.
    test_fraction
        Share of samples held out for testing, in ``(0, 1)``; every class is split in
        the same proportion.

    Returns
    -------
    CentralDataset
        Named ``"digits"``.
    """
    check_seed(seed)
    _check_fraction(test_fraction)
    pixels, labels = _digits_arrays()
    x = (np.asarray(pixels, dtype=np.float64) / 16.0).astype(np.float32)
    y = np.asarray(labels, dtype=np.int64)
    return _split_central("digits", x, y, 10, test_fraction, rng_for(seed, Stream.CENTRAL_SPLIT))


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Pixels and labels from the file scikit-learn ships, read without importing it.

    ``import sklearn.datasets`` alone costs about 0.15 s, most of a small simulation's
    start; the table (64 pixel columns, then the label) is read straight from
    ``sklearn/datasets/data/digits.csv.gz``, and scikit-learn's own loader is used if a
    release keeps it elsewhere or in another form.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.submodule_search_locations:
        path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            table = np.loadtxt(path, delimiter=",", ndmin=2)
            if table.shape == (DIGITS_SAMPLES, 65):
                return table[:, :64], table[:, 64].astype(np.int64)
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    return bunch.data, bunch.target


def load_mnist1d(seed: int, num_samples: int = 4000, test_fraction: float = 0.2) -> CentralDataset:
    """MNIST-1D (Greydanus, 2020, https://github.com/greydanus/mnist1d), generated offline.

    Calls the package's own generator ``mnist1d.data.make_dataset`` (never
    ``get_dataset``, which downloads) with its default arguments, a seed derived from
    ``seed`` and no built-in split; then splits train/test stratified by class. Samples
    are 40-long float32 sequences. Generation costs about 0.7 ms per sample.

    The generator seeds the *global* ``numpy`` and ``random`` states; this function
    saves and restores both, so callers see no change (not thread-safe: do not draw
    from the global RNGs in another thread meanwhile).

    Parameters
    ----------
    seed
        Seed of the generation and of the split.
    num_samples
        Total samples, a positive multiple of 10 (the generator draws equally per class).
    test_fraction
        Share of samples held out for testing, in ``(0, 1)``.

    Returns
    -------
    CentralDataset
        Named ``"mnist1d"``.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    check_seed(seed)
    _check_fraction(test_fraction)
    if isinstance(num_samples, bool) or num_samples < 10 or num_samples % 10:
        raise ValueError(f"num_samples must be a positive multiple of 10, got {num_samples!r}")
    args = get_dataset_args()
    args.num_samples = num_samples
    args.train_split = 1.0
    args.seed = int(rng_for(seed, Stream.MNIST1D).integers(2**32))
    with _global_rng_restored():
        generated = make_dataset(args)
    x = np.asarray(generated["x"], dtype=np.float32)
    y = np.asarray(generated["y"], dtype=np.int64)
    split_rng = rng_for(seed, Stream.CENTRAL_SPLIT)
    return _split_central("mnist1d", x, y, MNIST1D_NUM_CLASSES, test_fraction, split_rng)


def partition_central(
    central: CentralDataset,
    kind: str,
    num_clients: int,
    seed: int,
    alpha: float | None = None,
    sigma: float | None = None,
    min_samples: int = 1,
) -> FederatedDataset:
    """Split a central dataset across clients, test set included.

    The train split is partitioned by ``kind``:

    - ``"iid"``: :func:`~fedsys.data.partition.iid_partition` (no ``alpha``/``sigma``);
    - ``"dirichlet"``: :func:`~fedsys.data.partition.dirichlet_partition` (needs ``alpha``);
    - ``"quantity"`` (alias ``"quantity_skew"``):
      :func:`~fedsys.data.partition.quantity_skew_partition` (needs ``sigma``).

    The test split is then dealt out class by class in proportion to each client's
    train count of that class (largest-remainder rounding), so a client's test data
    follows its own label distribution and federated evaluation on chosen participants
    is meaningful. Every test sample goes to exactly one client; clients may get none.
    Test samples of a class no client trains on go out in proportion to client sizes.

    Parameters
    ----------
    central
        The dataset to split.
    kind
        ``"iid"``, ``"dirichlet"`` or ``"quantity"`` (``"quantity_skew"``).
    num_clients
        Number of clients.
    seed
        Seed of the train partition and of the test split.
    alpha
        Dirichlet concentration, for ``kind="dirichlet"`` only.
    sigma
        Lognormal size spread, for ``kind="quantity"`` only.
    min_samples
        Minimum train samples per client.

    Returns
    -------
    FederatedDataset
        With ``test_offsets`` set; named ``"<central.name>-<kind>"``.

    Raises
    ------
    ValueError
        For an unknown ``kind``, a missing or superfluous ``alpha``/``sigma``, or
        out-of-range arguments.
    """
    if kind not in _PARTITIONERS:
        raise ValueError(f"kind must be one of {sorted(_PARTITIONERS)}, got {kind!r}")
    partition = _PARTITIONERS[kind](central.y_train, num_clients, seed, alpha, sigma, min_samples)
    test_partition = split_test_like_train(
        central.y_train, partition, central.y_test, central.num_classes, seed
    )
    return FederatedDataset.from_partition(
        name=f"{central.name}-{kind}",
        features=central.x_train,
        labels=central.y_train,
        partition=partition,
        test_features=central.x_test,
        test_labels=central.y_test,
        num_classes=central.num_classes,
        test_partition=test_partition,
    )


def split_test_like_train(
    train_labels: np.ndarray,
    partition: list[np.ndarray],
    test_labels: np.ndarray,
    num_classes: int,
    seed: int,
) -> list[np.ndarray]:
    """Deal test samples to clients in proportion to their train counts per class.

    Parameters
    ----------
    train_labels
        Labels of the partitioned train set.
    partition
        Train sample indices of each client.
    test_labels
        Labels of the test set to split.
    num_classes
        Number of classes (labels are below it).
    seed
        Seed of the rounding tie-breaks and of which sample goes where.

    Returns
    -------
    list[np.ndarray]
        Test sample indices of each client (sorted, disjoint, covering the test set).
    """
    check_seed(seed)
    num_clients = len(partition)
    counts = np.zeros((num_clients, num_classes), dtype=np.int64)
    owners = np.repeat(np.arange(num_clients), [len(p) for p in partition])
    np.add.at(counts, (owners, train_labels[np.concatenate(partition)]), 1)
    sizes = counts.sum(axis=1)
    rng = rng_for(seed, Stream.TEST_SPLIT)
    owner = np.empty(len(test_labels), dtype=np.int64)
    for label, indices in enumerate(group_by_owner(test_labels, num_classes)):
        if len(indices) == 0:
            continue
        weights = counts[:, label] if counts[:, label].any() else sizes
        share = apportion(len(indices), weights, rng)
        owner[rng.permutation(indices)] = np.repeat(np.arange(num_clients), share)
    return group_by_owner(owner, num_clients)


_Partitioner = Callable[[np.ndarray, int, int, float | None, float | None, int], list[np.ndarray]]


def _iid(
    labels: np.ndarray,
    num_clients: int,
    seed: int,
    alpha: float | None,
    sigma: float | None,
    min_samples: int,
) -> list[np.ndarray]:
    _reject_unused("iid", alpha=alpha, sigma=sigma)
    if num_clients * min_samples > len(labels):
        raise ValueError(
            f"cannot give each of num_clients={num_clients} clients min_samples={min_samples} "
            f"samples: only {len(labels)} samples"
        )
    return iid_partition(len(labels), num_clients, seed)


def _dirichlet(
    labels: np.ndarray,
    num_clients: int,
    seed: int,
    alpha: float | None,
    sigma: float | None,
    min_samples: int,
) -> list[np.ndarray]:
    _reject_unused("dirichlet", sigma=sigma)
    if alpha is None:
        raise ValueError("kind='dirichlet' needs alpha")
    return dirichlet_partition(labels, num_clients, alpha, seed, min_samples)


def _quantity_skew(
    labels: np.ndarray,
    num_clients: int,
    seed: int,
    alpha: float | None,
    sigma: float | None,
    min_samples: int,
) -> list[np.ndarray]:
    _reject_unused("quantity", alpha=alpha)
    if sigma is None:
        raise ValueError("kind='quantity' needs sigma")
    return quantity_skew_partition(len(labels), num_clients, sigma, seed, min_samples)


_PARTITIONERS: dict[str, _Partitioner] = {
    "iid": _iid,
    "dirichlet": _dirichlet,
    "quantity": _quantity_skew,
    "quantity_skew": _quantity_skew,
}


def _reject_unused(kind: str, **values: float | None) -> None:
    for name, value in values.items():
        if value is not None:
            raise ValueError(f"{name} is not used by kind={kind!r}; leave it None")


def _split_central(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    test_fraction: float,
    rng: np.random.Generator,
) -> CentralDataset:
    """Stratified split: each class loses the same share of samples to the test set."""
    num_test = round(test_fraction * len(y))
    by_class = group_by_owner(y, num_classes)
    per_class = apportion(num_test, np.array([len(c) for c in by_class]), rng)
    is_test = np.zeros(len(y), dtype=bool)
    for indices, count in zip(by_class, per_class, strict=True):
        is_test[rng.permutation(indices)[:count]] = True
    return CentralDataset(
        name=name,
        x_train=x[~is_test],
        y_train=y[~is_test],
        x_test=x[is_test],
        y_test=y[is_test],
        num_classes=num_classes,
    )


def _check_fraction(test_fraction: float) -> None:
    if not (isinstance(test_fraction, int | float) and 0 < test_fraction < 1):
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")


@contextmanager
def _global_rng_restored() -> Iterator[None]:
    """Undo whatever the wrapped code does to the global ``numpy`` and ``random`` states."""
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    try:
        yield
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)

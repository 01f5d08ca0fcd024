"""A dataset split across clients, stored so each client's data is a zero-copy slice."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True, eq=False)
class FederatedDataset:
    """Training data of every client plus a held-out test set.

    Samples are stored grouped by client: client ``i`` owns rows
    ``offsets[i]:offsets[i + 1]`` of ``features``/``labels``, so fetching a client's
    data is a view, not a gather. Build instances with :meth:`from_partition`.

    Parameters
    ----------
    name
        Dataset name for logs.
    features, labels
        All training samples, grouped by client; labels are int64 class ids.
    offsets
        ``num_clients + 1`` non-decreasing row offsets.
    test_features, test_labels
        Held-out set for global evaluation.
    num_classes
        Number of label classes.
    test_offsets
        Optional per-client split of the test set (same layout as ``offsets``), for
        federated evaluation on chosen participants.
    client_names
        Optional original name of every client (e.g. LEAF user ids); client ``i`` is
        ``client_names[i]``.
    """

    name: str
    features: torch.Tensor
    labels: torch.Tensor
    offsets: np.ndarray
    test_features: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    test_offsets: np.ndarray | None = None
    client_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.features.shape[0] != self.labels.shape[0]:
            raise ValueError(
                f"features have {self.features.shape[0]} rows but labels have "
                f"{self.labels.shape[0]}"
            )
        if self.offsets.ndim != 1 or self.offsets[0] != 0 or self.offsets[-1] != len(self.labels):
            raise ValueError("offsets must start at 0 and end at the number of samples")
        if np.any(np.diff(self.offsets) < 0):
            raise ValueError("offsets must be non-decreasing")
        if self.test_offsets is not None and (
            self.test_offsets.shape != self.offsets.shape
            or self.test_offsets[0] != 0
            or self.test_offsets[-1] != len(self.test_labels)
            or np.any(np.diff(self.test_offsets) < 0)
        ):
            raise ValueError(
                "test_offsets must have num_clients + 1 non-decreasing entries from 0 to the "
                "number of test samples"
            )
        if self.client_names is not None and len(self.client_names) != self.num_clients:
            raise ValueError(
                f"client_names has {len(self.client_names)} entries for {self.num_clients} clients"
            )

    @classmethod
    def from_partition(
        cls,
        name: str,
        features: torch.Tensor | np.ndarray,
        labels: torch.Tensor | np.ndarray,
        partition: Sequence[np.ndarray],
        test_features: torch.Tensor | np.ndarray,
        test_labels: torch.Tensor | np.ndarray,
        num_classes: int | None = None,
        test_partition: Sequence[np.ndarray] | None = None,
        client_names: Sequence[str] | None = None,
    ) -> FederatedDataset:
        """Group samples by client.

        Parameters
        ----------
        partition
            One array of sample indices per client (a client may own no sample).
        test_partition
            Optional per-client indices into the test set.
        client_names
            Optional original name of every client, in partition order.
        """
        x = _as_float_tensor(features)
        y = _as_label_tensor(labels)
        tx = _as_float_tensor(test_features)
        ty = _as_label_tensor(test_labels)
        order, offsets = _group(partition)
        if num_classes is None:
            num_classes = (
                int(max(int(y.max()) if len(y) else -1, int(ty.max()) if len(ty) else -1)) + 1
            )
        test_offsets = None
        if test_partition is not None:
            test_order, test_offsets = _group(test_partition)
            tx, ty = tx[test_order], ty[test_order]
        return cls(
            name=name,
            features=x[order],
            labels=y[order],
            offsets=offsets,
            test_features=tx,
            test_labels=ty,
            num_classes=num_classes,
            test_offsets=test_offsets,
            client_names=tuple(client_names) if client_names is not None else None,
        )

    @property
    def num_clients(self) -> int:
        """Number of clients."""
        return len(self.offsets) - 1

    @property
    def client_sizes(self) -> np.ndarray:
        """Training samples per client (int64 array)."""
        return np.diff(self.offsets)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample's features."""
        return tuple(self.features.shape[1:])

    def client_data(self, client_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and labels of one client (views, no copy).

        Raises
        ------
        KeyError
            For an unknown client id.
        """
        if not 0 <= client_id < self.num_clients:
            raise KeyError(f"unknown client {client_id}: ids are 0..{self.num_clients - 1}")
        begin, end = int(self.offsets[client_id]), int(self.offsets[client_id + 1])
        return self.features[begin:end], self.labels[begin:end]

    def client_test_data(self, client_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A client's share of the test set (requires ``test_offsets``)."""
        if self.test_offsets is None:
            raise ValueError(f"dataset {self.name!r} has no per-client test split")
        if not 0 <= client_id < self.num_clients:
            raise KeyError(f"unknown client {client_id}: ids are 0..{self.num_clients - 1}")
        begin, end = int(self.test_offsets[client_id]), int(self.test_offsets[client_id + 1])
        return self.test_features[begin:end], self.test_labels[begin:end]

    def label_counts(self) -> np.ndarray:
        """``(num_clients, num_classes)`` matrix of training samples per class."""
        return _counts_by_client(self.offsets, self.labels, self.num_classes)

    def test_label_counts(self) -> np.ndarray:
        """``(num_clients, num_classes)`` matrix of each client's test samples per class.

        Raises
        ------
        ValueError
            If the dataset has no per-client test split.
        """
        if self.test_offsets is None:
            raise ValueError(f"dataset {self.name!r} has no per-client test split")
        return _counts_by_client(self.test_offsets, self.test_labels, self.num_classes)


def _counts_by_client(offsets: np.ndarray, labels: torch.Tensor, num_classes: int) -> np.ndarray:
    """Samples per class of each client whose rows are ``offsets[i]:offsets[i + 1]``."""
    num_clients = len(offsets) - 1
    owner = np.repeat(np.arange(num_clients), np.diff(offsets))
    counts = np.zeros((num_clients, num_classes), dtype=np.int64)
    np.add.at(counts, (owner, labels.numpy()[: int(offsets[-1])]), 1)
    return counts


def _group(partition: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    sizes = np.array([len(p) for p in partition], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    order = (
        np.concatenate([np.asarray(p, dtype=np.int64) for p in partition])
        if len(partition)
        else np.zeros(0, dtype=np.int64)
    )
    return order, offsets


def _as_float_tensor(values: torch.Tensor | np.ndarray) -> torch.Tensor:
    tensor = values if isinstance(values, torch.Tensor) else torch.from_numpy(np.asarray(values))
    return tensor.to(torch.float32).contiguous()


def _as_label_tensor(values: torch.Tensor | np.ndarray) -> torch.Tensor:
    tensor = values if isinstance(values, torch.Tensor) else torch.from_numpy(np.asarray(values))
    return tensor.to(torch.int64).contiguous()

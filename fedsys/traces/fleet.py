"""Device profiles of a whole fleet, stored as parallel arrays indexed by client id.

A :class:`DeviceFleet` answers the three questions the virtual clock asks about a
device: how fast it computes, how fast it transfers, and whether it is online. It is
built for 100,000+ clients: every query is a vectorised numpy expression, with no
Python loop over clients and no per-client cursor, so answering "who is online at
``t``" costs one ``searchsorted`` over the fleet.

Availability semantics
----------------------
Each client ``i`` has a period ``period_s[i]`` (FedScale's ``finish_time``) and a
sorted list of sessions ``[start, end]`` in seconds inside ``[0, period]``. The
client is online at virtual time ``t`` iff some session satisfies
``start <= t mod period <= end``; both edges are inclusive, as in FedScale's
``ClientMetadata.is_active``. A period of ``0`` or ``inf`` means *untraced*: the
client is always online (FedScale's rule for a client without a behaviour trace)
and must have no sessions. A traced client with no sessions is never online.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

__all__ = ["DeviceFleet", "normalize_sessions"]

_FLOAT_FIELDS = (
    "compute_s_per_sample",
    "down_bytes_per_s",
    "up_bytes_per_s",
    "period_s",
    "avail_starts",
    "avail_ends",
)


@dataclass(frozen=True, eq=False)
class DeviceFleet:
    """Compute speed, bandwidth and availability sessions of ``N`` devices.

    Client ``i`` owns sessions ``avail_offsets[i]:avail_offsets[i + 1]`` of
    ``avail_starts``/``avail_ends`` (CSR layout). Within a client, sessions are
    sorted and strictly disjoint (use :func:`normalize_sessions` to get there).

    Parameters
    ----------
    compute_s_per_sample
        ``(N,)`` seconds to *train* on one sample (forward + backward) with the
        reference model (MobileNetV2, see :mod:`fedsys.traces.cost`).
    down_bytes_per_s, up_bytes_per_s
        ``(N,)`` download and upload bandwidth in **bytes** per second (> 0).
    period_s
        ``(N,)`` length of each client's availability cycle in seconds; ``0`` or
        ``inf`` marks an untraced, always-online client.
    avail_offsets
        ``(N + 1,)`` int64 session offsets.
    avail_starts, avail_ends
        ``(M,)`` session bounds in seconds, ``0 <= start <= end <= period``.
    device_model
        Optional device model name per client (e.g. ``"CPH1801"``).

    Raises
    ------
    ValueError
        When shapes disagree or a value breaks the rules above.
    """

    compute_s_per_sample: np.ndarray
    down_bytes_per_s: np.ndarray
    up_bytes_per_s: np.ndarray
    period_s: np.ndarray
    avail_offsets: np.ndarray
    avail_starts: np.ndarray
    avail_ends: np.ndarray
    device_model: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in _FLOAT_FIELDS:
            array = np.ascontiguousarray(getattr(self, name), dtype=np.float64)
            object.__setattr__(self, name, array)
        offsets = np.ascontiguousarray(self.avail_offsets, dtype=np.int64)
        object.__setattr__(self, "avail_offsets", offsets)
        if self.device_model is not None:
            object.__setattr__(self, "device_model", tuple(str(m) for m in self.device_model))
        _validate(self)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def always_available(
        cls,
        num_clients: int,
        compute_s_per_sample: float | np.ndarray = 0.165,
        down_bytes_per_s: float | np.ndarray = 762_500.0,
        up_bytes_per_s: float | np.ndarray | None = None,
    ) -> DeviceFleet:
        """A fleet whose devices never go offline.

        The defaults are the medians of :func:`fedsys.traces.generate_fleet`
        (0.165 s per training sample, 6.1 Mbit/s = 762,500 bytes/s both ways).

        Parameters
        ----------
        num_clients
            Number of devices.
        compute_s_per_sample, down_bytes_per_s, up_bytes_per_s
            Scalars or ``(num_clients,)`` arrays; upload defaults to download.
        """
        up = down_bytes_per_s if up_bytes_per_s is None else up_bytes_per_s
        shape = (num_clients,)
        return cls(
            compute_s_per_sample=np.broadcast_to(compute_s_per_sample, shape),
            down_bytes_per_s=np.broadcast_to(down_bytes_per_s, shape),
            up_bytes_per_s=np.broadcast_to(up, shape),
            period_s=np.zeros(shape),
            avail_offsets=np.zeros(num_clients + 1, dtype=np.int64),
            avail_starts=np.zeros(0),
            avail_ends=np.zeros(0),
        )

    def take(self, client_ids: Sequence[int] | np.ndarray | Iterable[int]) -> DeviceFleet:
        """The sub-fleet of ``client_ids``, renumbered ``0..k-1`` in the given order."""
        ids = _as_ids(client_ids, self.num_clients)
        counts = self.avail_offsets[ids + 1] - self.avail_offsets[ids]
        new_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        gather = np.repeat(self.avail_offsets[ids] - new_offsets[:-1], counts) + np.arange(
            new_offsets[-1]
        )
        models = None if self.device_model is None else tuple(self.device_model[i] for i in ids)
        return DeviceFleet(
            compute_s_per_sample=self.compute_s_per_sample[ids],
            down_bytes_per_s=self.down_bytes_per_s[ids],
            up_bytes_per_s=self.up_bytes_per_s[ids],
            period_s=self.period_s[ids],
            avail_offsets=new_offsets,
            avail_starts=self.avail_starts[gather],
            avail_ends=self.avail_ends[gather],
            device_model=models,
        )

    subset = take

    def without_availability(self) -> DeviceFleet:
        """The same devices, always online (speeds and bandwidths kept)."""
        return replace(
            self,
            period_s=np.zeros(self.num_clients),
            avail_offsets=np.zeros(self.num_clients + 1, dtype=np.int64),
            avail_starts=np.zeros(0),
            avail_ends=np.zeros(0),
        )

    def scaled_compute(self, model_cost_ratio: float) -> DeviceFleet:
        """The same devices training a model ``model_cost_ratio`` times as costly.

        Compute time scales linearly with the model's cost relative to the
        reference model (see :func:`fedsys.traces.model_cost_ratio`).
        """
        if not model_cost_ratio > 0:
            raise ValueError(f"model_cost_ratio must be > 0, got {model_cost_ratio}")
        return replace(self, compute_s_per_sample=self.compute_s_per_sample * model_cost_ratio)

    def scaled_transfers(self, transfer_cost_ratio: float) -> DeviceFleet:
        """The same devices moving ``transfer_cost_ratio`` times the bytes of every transfer.

        Bandwidths are divided by the ratio, so a download or upload of ``b`` bytes
        takes as long as ``transfer_cost_ratio * b`` bytes would on the traced link
        (see :func:`fedsys.traces.transfer_cost_ratio`). Compute and availability are
        untouched.
        """
        if not transfer_cost_ratio > 0:
            raise ValueError(f"transfer_cost_ratio must be > 0, got {transfer_cost_ratio}")
        return replace(
            self,
            down_bytes_per_s=self.down_bytes_per_s / transfer_cost_ratio,
            up_bytes_per_s=self.up_bytes_per_s / transfer_cost_ratio,
        )

    def scaled_time(self, time_scale: float) -> DeviceFleet:
        """The same devices on a clock running ``1 / time_scale`` times as fast.

        Every device time is multiplied by ``time_scale``: seconds per sample and
        availability sessions (and periods) grow by it, bandwidths shrink by it. A
        ``time_scale`` of 0.01 replays a fleet 100 times faster than real devices,
        which lets a real deployment emulate hours of a fleet in minutes; the
        simulator and the emulated clients scale identically, so they stay comparable.
        """
        if not (time_scale > 0 and np.isfinite(time_scale)):
            raise ValueError(f"time_scale must be a positive number, got {time_scale}")
        if time_scale == 1.0:
            return self
        return replace(
            self,
            compute_s_per_sample=self.compute_s_per_sample * time_scale,
            down_bytes_per_s=self.down_bytes_per_s / time_scale,
            up_bytes_per_s=self.up_bytes_per_s / time_scale,
            period_s=self.period_s * time_scale,
            avail_starts=self.avail_starts * time_scale,
            avail_ends=self.avail_ends * time_scale,
        )

    # ------------------------------------------------------------------ queries
    @property
    def num_clients(self) -> int:
        """Number of devices."""
        return len(self.compute_s_per_sample)

    @property
    def num_sessions(self) -> int:
        """Total number of availability sessions."""
        return len(self.avail_starts)

    @property
    def untraced(self) -> np.ndarray:
        """``(N,)`` bool: clients without an availability trace (always online)."""
        return (self.period_s == 0) | np.isinf(self.period_s)

    def is_available(self, client_ids: np.ndarray | Sequence[int], t: float) -> np.ndarray:
        """Whether each client is online at virtual time ``t`` (edges inclusive).

        Parameters
        ----------
        client_ids
            Client ids (any integer array-like).
        t
            Virtual time in seconds.

        Returns
        -------
        numpy.ndarray
            Bool array aligned with ``client_ids``.
        """
        ids = _as_ids(client_ids, self.num_clients)
        online, _, _ = self._locate(ids, t)
        return online

    def available_clients(self, t: float) -> np.ndarray:
        """Ids (int64, ascending) of every client online at virtual time ``t``."""
        ids = np.arange(self.num_clients, dtype=np.int64)
        online, _, _ = self._locate(ids, t)
        return ids[online]

    def online_until(self, client_ids: np.ndarray | Sequence[int], t: float) -> np.ndarray:
        """Absolute virtual time at which each client's current session ends.

        ``inf`` for untraced clients (and for a session covering the whole
        period); ``-inf`` for a client offline at ``t``. A session that ends
        exactly at the period and continues from ``0`` in the next cycle counts
        as one session. A client finishing at time ``f`` completes iff
        ``f <= online_until``.
        """
        ids = _as_ids(client_ids, self.num_clients)
        online, idx, phase = self._locate(ids, t)
        until = np.full(len(ids), -np.inf)
        until[self.untraced[ids]] = np.inf
        traced_online = online & ~self.untraced[ids]
        if not traced_online.any():
            return until
        sel_ids, sel_idx, sel_phase = ids[traced_online], idx[traced_online], phase[traced_online]
        cycle_start = t - sel_phase
        end = self.avail_ends[sel_idx]
        period = self.period_s[sel_ids]
        first = self.avail_offsets[sel_ids]
        wraps = (end >= period) & (self.avail_starts[first] == 0)
        first_end = self.avail_ends[first]
        result = np.where(wraps, cycle_start + period + first_end, cycle_start + end)
        result[wraps & (first_end >= period)] = np.inf
        until[traced_online] = result
        return until

    def availability_fraction(self) -> np.ndarray:
        """``(N,)`` fraction of its period each client is online (1 if untraced)."""
        client_of = np.repeat(np.arange(self.num_clients), np.diff(self.avail_offsets))
        online_s = np.bincount(
            client_of, weights=self.avail_ends - self.avail_starts, minlength=self.num_clients
        )
        untraced = self.untraced
        period = np.where(untraced, 1.0, self.period_s)
        return np.where(untraced, 1.0, online_s / period)

    # ------------------------------------------------------------------ internals
    @cached_property
    def _search_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct session starts and exact integer keys ``client * (U + 1) + rank``."""
        values = np.unique(self.avail_starts)
        client_of = np.repeat(
            np.arange(self.num_clients, dtype=np.int64), np.diff(self.avail_offsets)
        )
        ranks = np.searchsorted(values, self.avail_starts, side="left") + 1
        return values, client_of * (len(values) + 1) + ranks

    def _locate(self, ids: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Online mask, candidate session index and phase ``t mod period`` per client.

        The candidate is the client's last session with ``start <= phase``; with
        sorted disjoint sessions it is the only one that can contain ``phase``.
        Integer rank keys make the per-client search exact (no float offsets).
        """
        period = self.period_s[ids]
        untraced = (period == 0) | np.isinf(period)
        phase = np.where(untraced, 0.0, np.mod(t, np.where(untraced, 1.0, period)))
        values, keys = self._search_keys
        if len(keys) == 0:
            return untraced, np.zeros(len(ids), dtype=np.int64), phase
        query = ids * (len(values) + 1) + np.searchsorted(values, phase, side="right")
        idx = np.searchsorted(keys, query, side="right") - 1
        has = idx >= self.avail_offsets[ids]
        safe_idx = np.where(has, idx, 0)
        inside = has & (phase <= self.avail_ends[safe_idx])
        return untraced | inside, safe_idx, phase


def normalize_sessions(
    client_idx: np.ndarray, starts: np.ndarray, ends: np.ndarray, num_clients: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort sessions per client and merge those that overlap or touch.

    Parameters
    ----------
    client_idx
        ``(M,)`` owner of each session, in ``0..num_clients-1``.
    starts, ends
        ``(M,)`` session bounds (``start <= end``), in any order.
    num_clients
        Number of clients (clients without sessions get an empty range).

    Returns
    -------
    tuple of numpy.ndarray
        ``(offsets, starts, ends)`` in the CSR layout of :class:`DeviceFleet`.
    """
    client_idx = np.asarray(client_idx, dtype=np.int64)
    starts = np.asarray(starts, dtype=np.float64)
    ends = np.asarray(ends, dtype=np.float64)
    if len(starts) == 0:
        return np.zeros(num_clients + 1, dtype=np.int64), starts, ends
    order = np.lexsort((starts, client_idx))
    client_idx, starts, ends = client_idx[order], starts[order], ends[order]
    values = np.unique(np.concatenate([starts, ends]))
    width = len(values) + 1
    start_keys = client_idx * width + np.searchsorted(values, starts)
    end_keys = client_idx * width + np.searchsorted(values, ends)
    running_end = np.maximum.accumulate(end_keys)
    new_block = np.ones(len(starts), dtype=bool)
    new_block[1:] = start_keys[1:] > running_end[:-1]
    first = np.flatnonzero(new_block)
    merged_ends = np.maximum.reduceat(ends, first)
    counts = np.bincount(client_idx[first], minlength=num_clients)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return offsets, starts[first], merged_ends


def _as_ids(client_ids: Iterable[int] | np.ndarray, num_clients: int) -> np.ndarray:
    ids = np.asarray(
        client_ids if isinstance(client_ids, np.ndarray | Sequence) else list(client_ids)
    )
    ids = ids.astype(np.int64, copy=False).reshape(-1)
    if len(ids) and (ids.min() < 0 or ids.max() >= num_clients):
        raise KeyError(f"client ids must lie in 0..{num_clients - 1}")
    return ids


def _validate(fleet: DeviceFleet) -> None:
    n = len(fleet.compute_s_per_sample)
    for name in ("down_bytes_per_s", "up_bytes_per_s", "period_s"):
        if getattr(fleet, name).shape != (n,):
            raise ValueError(f"{name} has shape {getattr(fleet, name).shape}, expected ({n},)")
    if fleet.device_model is not None and len(fleet.device_model) != n:
        raise ValueError(f"device_model has {len(fleet.device_model)} entries, expected {n}")
    if np.any(~np.isfinite(fleet.compute_s_per_sample)) or np.any(fleet.compute_s_per_sample < 0):
        raise ValueError("compute_s_per_sample must be finite and >= 0")
    if not (np.all(fleet.down_bytes_per_s > 0) and np.all(fleet.up_bytes_per_s > 0)):
        raise ValueError("bandwidths must be > 0 bytes per second")
    if np.any(np.isnan(fleet.period_s)) or np.any(fleet.period_s < 0):
        raise ValueError("period_s must be >= 0 (0 or inf: always available)")
    _validate_sessions(fleet, n)


def _validate_sessions(fleet: DeviceFleet, n: int) -> None:
    offsets, starts, ends = fleet.avail_offsets, fleet.avail_starts, fleet.avail_ends
    if offsets.shape != (n + 1,) or offsets[0] != 0 or offsets[-1] != len(starts):
        raise ValueError("avail_offsets must have N + 1 entries from 0 to the number of sessions")
    if ends.shape != starts.shape or np.any(np.diff(offsets) < 0):
        raise ValueError("avail_offsets must be non-decreasing; starts and ends aligned")
    counts = np.diff(offsets)
    if np.any(counts[fleet.untraced] > 0):
        raise ValueError("clients with period 0 or inf are always online and take no sessions")
    period = np.repeat(fleet.period_s, counts)
    if np.any(~(starts >= 0)) or np.any(~(starts <= ends)) or np.any(~(ends <= period)):
        raise ValueError("sessions need 0 <= start <= end <= period_s")
    same_client = np.repeat(np.arange(n), counts)
    same = same_client[1:] == same_client[:-1]
    if np.any(starts[1:][same] <= ends[:-1][same]):
        raise ValueError(
            "sessions of a client must be sorted and disjoint: use normalize_sessions()"
        )

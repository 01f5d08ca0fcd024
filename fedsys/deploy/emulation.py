"""A real client process that behaves like one device of a traced fleet.

``fedsys client --profile ID --traces FILE`` runs an ordinary
:class:`~fedsys.deploy.client.DeployClient` whose device is emulated:

* **compute** is paced to the profile: after real local training, the client sleeps
  until ``samples processed x seconds per sample`` (the simulator's compute term)
  has passed; when real training is already slower, the excess is logged and ends up
  in the fidelity report's compute term;
* **the link** is a token bucket per direction (no burst): a transfer of ``b`` bytes
  takes ``latency + b / bandwidth`` of the profile, paced chunk by chunk;
* **availability** follows the trace: the client connects when its device comes
  online and disconnects (a real dropout, seen by the server) when it goes offline.

Profiles are shaped by the same functions the simulator uses (``shape_fleet``,
``charge_transfers``, ``cost_ratio_of``), so both sides run the same fleet.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from fedsys.config.schema import DevicesConfig
from fedsys.metrics.writers import append_text
from fedsys.traces.fleet import DeviceFleet

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceProfile:
    """One device as the run's clock sees it (cost ratios and time scale applied).

    Parameters
    ----------
    client_id
        The device's row in the traces (also its client id in the simulator).
    compute_s_per_sample
        Seconds to train one sample of the run's model.
    down_bytes_per_s, up_bytes_per_s
        Bandwidth charged for the run's model and updates.
    latency_s
        One-way latency added to every transfer (the simulator has none; default 0).
    availability
        A one-device fleet holding the device's availability sessions.
    """

    client_id: int
    compute_s_per_sample: float
    down_bytes_per_s: float
    up_bytes_per_s: float
    latency_s: float
    availability: DeviceFleet

    @classmethod
    def from_fleet(
        cls, fleet: DeviceFleet, client_id: int, cost_ratio: float, latency_s: float = 0.0
    ) -> DeviceProfile:
        """Profile ``client_id`` of an already shaped fleet.

        Raises
        ------
        ValueError
            If the fleet has no device ``client_id`` or the latency is negative.
        """
        if not 0 <= client_id < fleet.num_clients:
            raise ValueError(
                f"--profile {client_id} is out of range: the traces hold "
                f"{fleet.num_clients} devices (0..{fleet.num_clients - 1})"
            )
        if not latency_s >= 0:
            raise ValueError(f"latency must be >= 0 seconds, got {latency_s}")
        return cls(
            client_id=client_id,
            compute_s_per_sample=float(fleet.compute_s_per_sample[client_id]) * cost_ratio,
            down_bytes_per_s=float(fleet.down_bytes_per_s[client_id]),
            up_bytes_per_s=float(fleet.up_bytes_per_s[client_id]),
            latency_s=latency_s,
            availability=fleet.take([client_id]),
        )

    def compute_s(self, samples_processed: int) -> float:
        """Seconds the device needs to train on ``samples_processed`` samples."""
        return samples_processed * self.compute_s_per_sample


def profile_for(
    traces: Path | DeviceFleet,
    devices: DevicesConfig,
    client_id: int,
    model: nn.Module,
    latency_s: float = 0.0,
) -> DeviceProfile:
    """Device ``client_id`` of ``traces`` shaped exactly as the simulator shapes its fleet.

    ``traces`` is a trace file or a fleet already loaded from one (a host of many
    devices reads the file once).
    """
    from fedsys.parts.builders import charge_transfers, cost_ratio_of, shape_fleet

    fleet = load_traces(traces, devices) if isinstance(traces, Path) else traces
    if not 0 <= client_id < fleet.num_clients:
        raise ValueError(
            f"--profile {client_id} is out of range: the traces hold {fleet.num_clients} devices"
        )
    fleet = charge_transfers(shape_fleet(fleet.take([client_id]), devices), devices, model)
    profile = DeviceProfile.from_fleet(fleet, 0, cost_ratio_of(devices, model), latency_s)
    return replace(profile, client_id=client_id)


def load_traces(traces: Path, devices: DevicesConfig) -> DeviceFleet:
    """The fleet of a trace file (a FedScale pair takes ``devices.capacity_path``)."""
    from fedsys.traces.report import load_fleet_file

    capacity = devices.capacity_path if devices.source == "file" else None
    return load_fleet_file(traces, capacity)


# ---------------------------------------------------------------------- the link
class PacedLink:
    """One direction of a device's link: a token bucket without burst, plus latency.

    :meth:`start` marks the beginning of a transfer; :meth:`carry` returns once the
    bytes carried so far would have crossed the emulated link, i.e. at
    ``start + latency + bytes / rate``.

    Parameters
    ----------
    bytes_per_s
        Link rate.
    latency_s
        One-way latency charged once per transfer.
    clock
        Monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        bytes_per_s: float,
        latency_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not bytes_per_s > 0:
            raise ValueError(f"bytes_per_s must be > 0, got {bytes_per_s}")
        self.bytes_per_s = bytes_per_s
        self.latency_s = latency_s
        self.clock = clock
        self._started = 0.0
        self._carried = 0
        self.elapsed_s = 0.0

    def start(self) -> None:
        """A new transfer begins now."""
        self._started = self.clock()
        self._carried = 0
        self.elapsed_s = 0.0

    def finish(self) -> float:
        """The transfer's last byte is out: its measured seconds (also ``elapsed_s``)."""
        self.elapsed_s = self.clock() - self._started
        return self.elapsed_s

    def due_s(self) -> float:
        """When the bytes carried so far reach the far side (clock seconds)."""
        return self._started + self.latency_s + self._carried / self.bytes_per_s

    def transfer_s(self, num_bytes: int) -> float:
        """Seconds a transfer of ``num_bytes`` takes on this link."""
        return self.latency_s + num_bytes / self.bytes_per_s

    async def carry(self, num_bytes: int) -> None:
        """Wait until ``num_bytes`` more bytes have crossed the link."""
        self._carried += num_bytes
        delay = self.due_s() - self.clock()
        if delay > 0:
            await asyncio.sleep(delay)


@dataclass
class TaskTiming:
    """One task as the emulated device lived it (one line of ``--timings``).

    ``download_s`` runs from asking for the model to holding it; ``upload_s`` from the
    server's grant to the update's last byte (the shaped transfer), ``upload_total_s``
    from the header to the server's verdict (its receive queue and aggregation too).
    """

    client_id: int
    round_idx: int
    started_s: float
    download_s: float
    train_s: float
    compute_s: float
    target_compute_s: float
    upload_s: float
    upload_total_s: float
    target_download_s: float
    target_upload_s: float
    accepted: bool
    reason: str


class DeviceEmulation:
    """The hooks a :class:`~fedsys.deploy.client.DeployClient` calls to act as a device.

    Parameters
    ----------
    profile
        The emulated device.
    timings_path
        Where each task's :class:`TaskTiming` is appended as a JSON line (optional).
    epoch
        Unix time at which the trace's clock reads 0 (shared with the server).
    """

    def __init__(
        self, profile: DeviceProfile, timings_path: Path | None = None, epoch: float = 0.0
    ) -> None:
        self.profile = profile
        self.timings_path = timings_path
        self.epoch = epoch
        self.down = PacedLink(profile.down_bytes_per_s, profile.latency_s)
        self.up = PacedLink(profile.up_bytes_per_s, profile.latency_s)
        self.timings: list[TaskTiming] = []
        self._train = (0.0, 0.0)

    async def shape_download(self, chunks: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """Pass the model's chunks on as the device's downlink would deliver them.

        A device going offline mid-download cancels the gRPC stream here, so the call
        never outlives the session (a half-read stream would hold its channel open).
        """
        self.down.start()
        try:
            async for chunk in chunks:
                await self.down.carry(len(chunk.data))
                yield chunk
        finally:
            cancel = getattr(chunks, "cancel", None)
            if cancel is not None:
                cancel()
        self.down.finish()

    async def pace_compute(self, samples_processed: int, train_s: float) -> None:
        """Sleep until the profile's compute time for ``samples_processed`` has passed."""
        target = self.profile.compute_s(samples_processed)
        self._train = (train_s, target)
        if train_s > target:
            _LOGGER.warning(
                "real training slower than the device profile",
                extra={"train_s": round(train_s, 4), "profile_s": round(target, 4)},
            )
        else:
            await asyncio.sleep(target - train_s)

    def finish_task(
        self,
        task: Any,
        elapsed_s: float,
        download_s: float,
        compute_s: float,
        upload_s: float,
        upload_bytes: int,
        accepted: bool,
        reason: str,
    ) -> TaskTiming:
        """Record how a task went (``task``: the server's ``TrainTask``)."""
        train_s, target_s = self._train
        timing = TaskTiming(
            client_id=self.profile.client_id,
            round_idx=int(task.round_idx),
            started_s=self.trace_time_s() - elapsed_s,
            download_s=download_s,
            train_s=train_s,
            compute_s=compute_s,
            target_compute_s=target_s,
            upload_s=self.up.elapsed_s,
            upload_total_s=upload_s,
            target_download_s=self.down.transfer_s(int(task.model_bytes)),
            target_upload_s=self.up.transfer_s(upload_bytes),
            accepted=accepted,
            reason=reason,
        )
        self.timings.append(timing)
        if self.timings_path is not None:
            # one write per line: whole lines from many clients
            line = json.dumps(asdict(timing)) + "\n"
            append_text(self.timings_path, line, permissions=0o644, make_parent=False)
        return timing

    def trace_time_s(self) -> float:
        """Seconds on the trace's clock now."""
        return time.time() - self.epoch


# ---------------------------------------------------------------------- availability
class AvailabilitySchedule:
    """When one device is online, on a trace clock that starts at ``epoch``.

    Parameters
    ----------
    fleet
        A one-device fleet (its sessions, already time-scaled).
    """

    def __init__(self, fleet: DeviceFleet) -> None:
        self.fleet = fleet

    def online(self, t: float) -> bool:
        """Whether the device is online at trace time ``t``."""
        return bool(self.fleet.is_available([0], t)[0])

    def online_until(self, t: float) -> float:
        """When the current session ends (``inf``: never; ``-inf``: offline now)."""
        return float(self.fleet.online_until([0], t)[0])

    def next_online(self, t: float) -> float:
        """The first trace time ``>= t`` at which the device is online (``inf``: never)."""
        if self.online(t):
            return t
        fleet = self.fleet
        starts = fleet.avail_starts[fleet.avail_offsets[0] : fleet.avail_offsets[1]]
        if len(starts) == 0:
            return math.inf
        period = float(fleet.period_s[0])
        phase = t % period
        later = starts[starts > phase]
        if len(later):
            return t + float(later[0]) - phase
        return t + period - phase + float(starts[0])


async def follow_availability(
    run_session: Callable[[], Any],
    schedule: AvailabilitySchedule,
    trace_time: Callable[[], float],
) -> str:
    """Run the client while its device is online; disconnect and reconnect by the trace.

    Before the trace starts (``t < 0``) the device's state at ``t = 0`` decides, so a
    device online at the start is connected when the server's first round begins.

    Parameters
    ----------
    run_session
        Starts the client (``DeployClient.run``); cancelling it closes its channel,
        which the server sees as a disconnect (a dropout if it held a task).
    schedule
        The device's availability.
    trace_time
        Seconds on the trace's clock now.

    Returns
    -------
    str
        The server's reason for finishing, or why the device never came back.

    A session that gives up on the server (``ConnectionError``: its reconnection
    attempts ran out, e.g. while a busy aggregator accepts a crowd of devices) is
    started again after ``RETRY_PAUSE_S`` while the device is online, as a phone keeps
    trying: one device's bad luck does not end the host that runs many. A refusal
    (``PermissionError``) ends it, and so does a session giving up ``MAX_RETRIES + 1``
    times in a row (no server there at all).
    """
    disconnects = 0
    retries = 0
    while True:
        now = trace_time()
        probe = max(now, 0.0)
        if not schedule.online(probe):
            wake = schedule.next_online(probe)
            if math.isinf(wake):
                return "the device's trace has no more online time"
            await asyncio.sleep(max(0.001, wake - now))
            continue
        until = schedule.online_until(probe)
        session = asyncio.ensure_future(run_session())
        try:
            done, _ = await asyncio.wait(
                {session}, timeout=None if math.isinf(until) else max(0.0, until - now)
            )
        except asyncio.CancelledError:
            session.cancel()
            raise
        if done:
            try:
                return str(session.result())
            except ConnectionError as exc:
                retries += 1
                if retries > MAX_RETRIES:
                    raise
                _LOGGER.warning(
                    "the device's link gave up; trying again",
                    extra={"error": str(exc), "in_s": RETRY_PAUSE_S},
                )
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
        disconnects += 1
        retries = 0
        session.cancel()
        _, pending = await asyncio.wait({session}, timeout=CLOSE_WAIT_S)
        if pending:  # its next connection supersedes it: the server counts the dropout then
            _LOGGER.warning("a session did not close in time", extra={"t_s": round(until, 3)})
        _LOGGER.info(
            "device offline by its trace",
            extra={"t_s": round(until, 3), "disconnects": disconnects},
        )
        # step just past the session's end, where the trace says offline
        await asyncio.sleep(max(0.0, until - trace_time()) + 1e-3)


CLOSE_WAIT_S = 5.0
"""Longest wait for a cancelled session to close its channel when its device goes offline."""
RETRY_PAUSE_S = 1.0
"""Pause before an online device whose session gave up on the server connects again."""
MAX_RETRIES = 3
"""Sessions in a row an online device starts again after they gave up on the server."""


def read_epoch(path: Path) -> float | None:
    """The unix time written to ``path``, or ``None`` while it is not there yet."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    try:
        return float(text) if text else None
    except ValueError:
        raise ValueError(f"{path} does not hold a unix time: {text[:40]!r}") from None


async def wait_for_epoch(path: Path, timeout_s: float = 600.0) -> float:
    """Wait until a launcher writes the trace's epoch (unix time) to ``path``.

    Raises
    ------
    TimeoutError
        If nothing is written within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while (epoch := read_epoch(path)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no start time in {path} after {timeout_s:.0f} s")
        await asyncio.sleep(0.05)
    return epoch


def ready_marker(epoch_file: Path, first_profile: int) -> Path:
    """Where a device host says it is ready (its devices built, waiting for the epoch)."""
    return epoch_file.with_name(f"{epoch_file.name}.ready.{first_profile}")

"""Asynchronous buffered aggregation (FedBuff, Nguyen et al., AISTATS 2022).

https://arxiv.org/abs/2106.06639: clients train concurrently and continuously; the
server aggregates every ``buffer_size`` arrivals, down-weighting stale updates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from fedsys.core.update import ClientUpdate
from fedsys.core.weights import ModelWeights
from fedsys.metrics.records import RoundRecord
from fedsys.metrics.timeline import TIMELINE_KEY
from fedsys.sim.engine import Engine, WallTimer, report_for
from fedsys.sim.events import ClientArrived, ClientDropped, Launch
from fedsys.sim.round_timeline import sim_timeline
from fedsys.sim.rounds.base import RoundMode


def staleness_weight(staleness: int, exponent: float = 0.5) -> float:
    """FedBuff's polynomial discount ``1 / (1 + staleness) ** exponent``."""
    if staleness < 0:
        raise ValueError(f"staleness must be >= 0, got {staleness}")
    return float((1.0 + staleness) ** -exponent)


def buffer_draw(client_draws: list[tuple[int, int, int]]) -> tuple[int, int]:
    """One aggregation as a single draw: ``(population, sampled)`` for the accountant.

    A client is in the buffer only if one of the refills that launched its clients drew
    it, so its chance is at most the sum over those refills of drawn / online (the union
    bound): priced as all their draws from the smallest of their populations.
    ``client_draws`` holds ``(selection, online, drawn)`` per buffered client.
    """
    distinct = set(client_draws)
    if not distinct:
        return 0, 0
    population = min(online for _, online, _ in distinct)
    return population, min(population, sum(drawn for _, _, drawn in distinct))


@dataclass
class _Window:
    """What happened since the last aggregation."""

    start_s: float
    buffer: list[Launch] = field(default_factory=list)
    dropped: list[Launch] = field(default_factory=list)
    stale: list[Launch] = field(default_factory=list)
    launched: int = 0
    bytes_down: int = 0


@dataclass(frozen=True)
class AsyncRunState:
    """The async loop's state between aggregations.

    Parameters
    ----------
    snapshots
        Global weights by model version, kept while a client trains from them.
    pinned
        Clients in flight per model version.
    selections
        Selections made so far (each draws from its own stream).
    idle_s
        Virtual seconds spent waiting for a usable client.
    drawn_by
        For each launch in flight (by serial): the draw that launched it, as
        ``(selection, online population, clients drawn)``.
    """

    snapshots: dict[int, ModelWeights]
    pinned: dict[int, int]
    selections: int
    idle_s: float
    drawn_by: dict[int, tuple[int, int, int]] = field(default_factory=dict)


class BufferedAsyncRounds(RoundMode):
    """Keep up to ``max_concurrency`` clients training; aggregate every ``buffer_size``.

    An arriving update started from model version ``v``; at aggregation version ``V``
    its staleness is ``V - v``. Updates staler than ``max_staleness`` are dropped;
    the others are scaled by :func:`staleness_weight` before the strategy sees them.
    Each "round" record is one aggregation. ``clients_per_round`` is not used: the
    buffer size plays its part.

    For privacy accounting a strategy that asks (``with_clients``, as DP-FedAvg does)
    is told each aggregation's clients: a buffer is not a fresh sample (the first refill
    draws ``max_concurrency`` clients at once, and a fast client returns to buffer after
    buffer), so the run is accounted per client, without sampling amplification. Each
    record's ``extra`` logs the draw that launched each of its clients
    (``client_draws``: selection, online population, clients drawn), so the accounting
    can be checked independently.

    Parameters
    ----------
    max_concurrency
        Clients training at the same time.
    buffer_size
        Arrivals per aggregation (B).
    max_staleness
        Largest staleness still aggregated.
    staleness_exponent
        Exponent of the staleness discount (0.5 in FedBuff).
    """

    def __init__(
        self,
        max_concurrency: int = 100,
        buffer_size: int = 10,
        max_staleness: int = 20,
        staleness_exponent: float = 0.5,
    ) -> None:
        self.max_concurrency = max_concurrency
        self.buffer_size = buffer_size
        self.max_staleness = max_staleness
        self.staleness_exponent = staleness_exponent

    def run(
        self, engine: Engine, rounds: int, clients_per_round: int, start_round: int = 0
    ) -> Iterator[RoundRecord]:
        """Yield one record per aggregation."""
        run = _AsyncRun(self, engine)
        if engine.mode_state is not None:
            run.restore(engine.mode_state)
        for version in range(start_round, rounds):
            timer = WallTimer()
            window = run.fill_buffer(version)
            record = run.aggregate(version, window)
            engine.mode_state = run.state()
            yield replace(record, wall_s=timer.elapsed_s())


class _AsyncRun:
    """The event loop of one asynchronous run: handlers per event kind, snapshots per version."""

    def __init__(self, mode: BufferedAsyncRounds, engine: Engine) -> None:
        self.mode = mode
        self.engine = engine
        self.snapshots: dict[int, ModelWeights] = {0: engine.weights}
        self.pinned: Counter[int] = Counter()
        self.selections = 0
        self.idle_s = 0.0
        self.max_idle_s = 30 * 86400.0
        self.drawn_by: dict[int, tuple[int, int, int]] = {}

    def state(self) -> AsyncRunState:
        """What the next aggregation needs besides the engine (for checkpoints)."""
        return AsyncRunState(
            snapshots=dict(self.snapshots),
            pinned=dict(self.pinned),
            selections=self.selections,
            idle_s=self.idle_s,
            drawn_by=dict(self.drawn_by),
        )

    def restore(self, state: AsyncRunState) -> None:
        """Continue from :meth:`state` of an earlier run."""
        self.snapshots = dict(state.snapshots)
        self.pinned = Counter(state.pinned)
        self.selections = state.selections
        self.idle_s = state.idle_s
        self.drawn_by = dict(state.drawn_by)

    def fill_buffer(self, version: int) -> _Window:
        window = _Window(start_s=self.engine.clock.now_s)
        dispatch = {ClientArrived: self._on_arrival, ClientDropped: self._on_dropout}
        while len(window.buffer) < self.mode.buffer_size:
            self._refill(version, window)
            if not len(self.engine.queue):
                self._wait()
                continue
            self.idle_s = 0.0
            time_s, event = self.engine.queue.pop()
            self.engine.clock.advance_to(time_s)
            self.engine.release(event.launch)
            dispatch[type(event)](event, version, window)  # type: ignore[operator]
        return window

    def _wait(self) -> None:
        """Nobody is training and nobody usable is online: let virtual time pass."""
        step_s = self.engine.parts.idle_step_s
        if self.idle_s >= self.max_idle_s:
            raise RuntimeError(
                f"no client came online within {self.max_idle_s:.0f} virtual seconds "
                f"(t={self.engine.clock.now_s:.0f}s): check the availability trace"
            )
        self.engine.clock.advance_to(self.engine.clock.now_s + step_s)
        self.idle_s += step_s

    def _refill(self, version: int, window: _Window) -> None:
        free = self.mode.max_concurrency - len(self.engine.busy)
        if free <= 0:
            return
        chosen = self.engine.select(self.selections, free)
        draw = (self.selections, self.engine.last_population, len(chosen))
        self.selections += 1
        for launch in self.engine.launch(chosen, version=version):
            self.drawn_by[launch.serial] = draw
            self.pinned[version] += 1
            window.launched += 1
            window.bytes_down += launch.bytes_down

    def _on_arrival(self, event: ClientArrived, version: int, window: _Window) -> None:
        if version - event.launch.version > self.mode.max_staleness:
            window.stale.append(event.launch)
            self.drawn_by.pop(event.launch.serial, None)
            self._unpin(event.launch.version, version)
        else:
            window.buffer.append(event.launch)

    def _on_dropout(self, event: ClientDropped, version: int, window: _Window) -> None:
        window.dropped.append(event.launch)
        self.drawn_by.pop(event.launch.serial, None)
        self._unpin(event.launch.version, version)

    def _unpin(self, launch_version: int, current: int) -> None:
        self.pinned[launch_version] -= 1
        if self.pinned[launch_version] <= 0 and launch_version != current:
            self.snapshots.pop(launch_version, None)
            del self.pinned[launch_version]

    def aggregate(self, version: int, window: _Window) -> RoundRecord:
        engine = self.engine
        used: dict[int, ClientUpdate] = {}
        staleness = [version - launch.version for launch in window.buffer]

        def weighted_updates() -> Iterator[ClientUpdate]:
            starts = [self.snapshots[launch.version] for launch in window.buffer]
            for launch, update in engine.train_many(window.buffer, starts):
                factor = staleness_weight(version - launch.version, self.mode.staleness_exponent)
                used[id(launch)] = replace(update, delta=update.delta.scale(factor))
                yield used[id(launch)]
                self._unpin(launch.version, version)

        client_draws = [
            self.drawn_by.pop(launch.serial, (-1, launch.population, self.mode.max_concurrency))
            for launch in window.buffer
        ]
        engine.note_draw(*buffer_draw(client_draws))
        with_clients = getattr(engine.parts.strategy, "with_clients", None)
        if with_clients is not None:  # privacy accounted per client (see the class)
            clients = [launch.client_id for launch in window.buffer]
            engine.strategy_state = with_clients(engine.strategy_state, clients)
        result = engine.aggregate(weighted_updates())
        self.snapshots[version + 1] = engine.weights
        if self.pinned[version] <= 0:
            self.snapshots.pop(version, None)
        reports = [
            report_for(launch, result.outcome_of(used.get(id(launch))), used.get(id(launch)))
            for launch in window.buffer
        ]
        reports += [report_for(launch, "dropped") for launch in window.dropped]
        reports += [report_for(launch, "straggled") for launch in window.stale]
        engine.feedback(reports)
        launched = [*window.buffer, *window.dropped, *window.stale]
        now = engine.clock.now_s
        timeline = sim_timeline(engine, version, launched, reports, window.start_s, now, now)
        return RoundRecord(
            round_idx=version,
            start_s=window.start_s,
            end_s=engine.clock.now_s,
            wall_s=0.0,
            selected=window.launched,
            participants=result.participants,
            dropouts=len(window.dropped),
            stragglers=len(window.stale),
            bytes_down=window.bytes_down,
            bytes_up=sum(launch.bytes_up for launch in window.buffer),
            rejected=len(result.rejected),
            train_loss=result.train_loss,
            extra={
                "clients": [launch.client_id for launch in window.buffer],
                "client_draws": [list(draw) for draw in client_draws],
                "mean_staleness": sum(staleness) / len(staleness) if staleness else 0.0,
                "max_staleness": max(staleness, default=0),
                **engine.accounting(result),
                TIMELINE_KEY: timeline,
            },
        )

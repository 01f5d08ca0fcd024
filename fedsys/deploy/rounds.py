"""One training round over live clients: launch, wait, aggregate, evaluate, record.

Every function takes the aggregator's :class:`~fedsys.deploy.state.ServerState` and
advances it; none opens a socket or writes a file. Updates arrive through the service
into the live round (:meth:`~fedsys.deploy.round_state.LiveRound.accept`). Work that
grows with the model (serialising and hashing the model version, evaluation) runs in
worker threads, so the event loop keeps serving every connection meanwhile.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
import time
from typing import Any

import numpy as np

from fedsys.config.schema import DeadlineRounds, SyncRounds
from fedsys.core.training import evaluate
from fedsys.deploy.feed import StreamingAggregation
from fedsys.deploy.late import fold_late, late_policy
from fedsys.deploy.local_work import local_work_problem, plan_work
from fedsys.deploy.memory import current_rss_bytes, peak_rss_bytes
from fedsys.deploy.registry import Assignment, Session
from fedsys.deploy.round_state import LiveRound
from fedsys.deploy.round_timeline import deploy_timeline
from fedsys.deploy.secure_round import SecureRound
from fedsys.deploy.state import DeployError, ModelBlob, ServerState
from fedsys.metrics.records import RoundRecord
from fedsys.metrics.timeline import TIMELINE_KEY
from fedsys.parts.rules import ceil_overcommit, task_seed
from fedsys.selection.availability import feed_availability
from fedsys.selection.describe import describe_selector
from fedsys.selection.priors import feed_priors
from fedsys.wire.protos import deploy_pb2

_LOGGER = logging.getLogger(__name__)


def round_shape(state: ServerState) -> tuple[int, int | None, float, int]:
    """(clients to select, arrivals that close the round, time limit, fewest to start).

    Raises
    ------
    DeployError
        If the config's round mode has no deployment.
    """
    config, settings = state.config, state.settings
    k = config.clients_per_round
    mode = config.round
    problem = local_work_problem(state)
    if problem is not None:
        raise DeployError(problem)
    if late_policy(state).enabled and state.secure_plan is not None:
        raise DeployError("round.late_updates cannot be used with deploy.secure_aggregation")
    if isinstance(mode, SyncRounds):
        fewest = settings.min_clients or k
        return ceil_overcommit(k, mode.overcommit), k, settings.round_timeout_s, fewest
    if isinstance(mode, DeadlineRounds):
        select = ceil_overcommit(k, mode.overcommit)
        fewest = settings.min_clients or mode.min_participants
        return select, None, mode.deadline_s, fewest
    raise DeployError(f"round.mode {mode.mode!r} is not supported by the deployment")


async def run_round(state: ServerState, round_idx: int) -> RoundRecord:
    """Run round ``round_idx`` to its record; the state holds the new model after it."""
    mode = state.config.round
    retries = 0
    # Serving model v: its bytes and checksum are ready before any task of round v goes out.
    state.model_blob = await asyncio.to_thread(ModelBlob.of, state.weights, round_idx)
    start_s: float | None = None
    while True:
        live = await launch(state, round_idx)
        if start_s is None:  # the round starts when its tasks go out, not while waiting
            start_s, wall = state.now_s(), time.perf_counter()
        _, _, limit_s, _ = round_shape(state)
        state.phase = "training"
        await live.wait(limit_s)
        state.phase = "aggregating"
        async with live.feed_lock:
            live.closed = True
        short = isinstance(mode, DeadlineRounds) and len(live.arrivals) < mode.min_participants
        if not short:  # a short round is not aggregated: held late updates wait on
            live.late = await fold_late(state, live)
        result = await live.feed.finish()
        state.selector_state = state.parts.selector.feedback(state.selector_state, live.reports())
        remember_step_times(state, live)
        if short and mode.on_short_round == "retry" and retries < mode.max_retries:
            retries += 1
            _LOGGER.warning("short round, retrying", extra={"round": round_idx})
            continue
        break
    aggregated = result is not None and not short
    if aggregated:
        assert result is not None
        state.weights, state.strategy_state = result
    accuracy, test_loss = await maybe_evaluate(state, round_idx)
    record = record_round(state, live, start_s, wall, aggregated, accuracy, test_loss)
    state.live_round = None
    return record


async def launch(state: ServerState, round_idx: int) -> LiveRound:
    """Wait for enough idle clients, select among them and send their tasks."""
    select, target, _, fewest = round_shape(state)
    available = await await_clients(state, select, fewest)
    if not state.connected_rss_bytes:  # connections held, nothing transferred yet
        state.connected_rss_bytes = current_rss_bytes()
    selector = state.parts.selector
    state.selector_state = feed_priors(
        selector, state.selector_state, available, *priors(state, available)
    )
    until, now = state.registry.online_until(available), state.now_s()  # what devices reported
    state.selector_state = feed_availability(selector, state.selector_state, available, until, now)
    chosen, state.selector_state = selector.select(
        state.selector_state, round_idx, available, select, now
    )
    serials = {int(c): state.launches + i for i, c in enumerate(chosen)}
    state.launches += len(chosen)
    present = [int(c) for c in chosen if int(c) in state.registry.sessions]
    feed: StreamingAggregation | SecureRound
    if state.secure_plan is None:
        feed = StreamingAggregation(
            state.parts.strategy, state.weights, state.strategy_state, queue_size=1
        )
    else:
        feed = SecureRound(
            state, round_idx, present, state.secure_plan, state.weights, state.strategy_state
        )
    live = LiveRound(round_idx, state.model_blob.version, target, feed)  # type: ignore[arg-type]
    live.available = len(available)
    state.live_round = live
    template = task_template(state, round_idx)
    live.work = plan_work(state, present, target)
    for client in present:
        session = state.registry.sessions[client]
        work = live.work.get(client)
        assignment = Assignment(
            task_id=secrets.token_hex(16),
            client_id=client,
            round_idx=round_idx,
            model_version=state.model_blob.version,
            assigned_at=time.monotonic(),
            upload_fraction=1.0 if work is None else work.upload_fraction,
        )
        instruction = deploy_pb2.Instruction(train=deploy_pb2.TrainTask())
        instruction.train.CopyFrom(template)
        instruction.train.task_id = assignment.task_id
        instruction.train.seed = task_seed(state.config.seed, round_idx, client, serials[client])
        if work is not None:
            instruction.train.local_steps = work.steps
            if work.upload_fraction < 1:
                instruction.train.upload_fraction = work.upload_fraction
                instruction.train.expected_update_bytes = work.upload_bytes
        if isinstance(feed, SecureRound):
            instruction.train.secure.CopyFrom(feed.task_for(client, assignment.task_id))
        live.assignments[client] = assignment
        live.sizes[client] = session.num_samples
        state.registry.assign(assignment, instruction)
    if isinstance(feed, SecureRound):
        feed.start(live)
    _LOGGER.info(
        "round started",
        extra={"round": round_idx, "selected": len(live.assignments), "idle": len(available)},
    )
    return live


def priors(state: ServerState, clients: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample counts and expected round times of ``clients`` (NaN: unknown).

    A round time is estimated as the simulator's clock charges it, from the
    speeds the device reported: model down, the task's samples, update up.
    """
    sizes = np.full(len(clients), np.nan)
    expected = np.full(len(clients), np.nan)
    for i, client in enumerate(clients.tolist()):
        session = state.registry.sessions.get(int(client))
        if session is None:
            continue
        sizes[i] = session.num_samples
        if session.speed is not None:
            compute_s, down_bps, up_bps = session.speed
            samples = state.parts.train.samples_processed(session.num_samples)
            expected[i] = (
                state.weights.num_bytes / down_bps
                + samples * compute_s
                + state.update_bytes / up_bps
            )
    return sizes, expected


def remember_step_times(state: ServerState, live: LiveRound) -> None:
    """Each arrival's measured seconds per local step, for clients that report no speed."""
    base = state.parts.train.local_steps
    for arrival in live.arrivals:
        work = live.work.get(arrival.client_id)
        steps = base if work is None else work.steps
        if steps:
            state.step_history[arrival.client_id] = arrival.duration_s / steps


def task_template(state: ServerState, round_idx: int) -> deploy_pb2.TrainTask:
    """The task every client of round ``round_idx`` gets (its id and seed filled per client)."""
    parts, config, blob = state.parts, state.config, state.model_blob
    train = dataclasses.asdict(parts.train)
    train["proximal_mu"] = max(train["proximal_mu"], parts.strategy.client_proximal_mu)
    mode = config.round
    return deploy_pb2.TrainTask(
        round_idx=round_idx,
        model_version=blob.version,
        model_sha256=blob.sha256,
        model_bytes=len(blob.data),
        train_config_json=json.dumps(train),
        codec=state.compressor.codec,
        codec_json=json.dumps(config.compression.model_dump(mode="json")),
        expected_update_bytes=state.update_bytes,
        deadline_s=mode.deadline_s if isinstance(mode, DeadlineRounds) else 0.0,
    )


async def await_clients(state: ServerState, select: int, fewest: int) -> np.ndarray:
    """Idle clients once enough are connected (see ``deploy.settle_s``).

    Raises
    ------
    DeployError
        If fewer than ``fewest`` are idle after ``deploy.wait_for_clients_s``.
    """
    state.phase = "waiting"
    settings, registry = state.settings, state.registry
    began = time.monotonic()
    while True:
        expire_stale_assignments(state)
        idle = registry.idle_ids()
        waited = time.monotonic() - began
        if len(idle) >= select:
            return idle
        everyone_idle = len(idle) == len(registry.sessions)
        settled = everyone_idle or (
            waited >= settings.settle_s
            and (registry.busy_count() == 0 or waited >= 4 * settings.settle_s)
        )
        if len(idle) >= max(fewest, 1) and settled:
            return idle
        if waited >= settings.wait_for_clients_s:
            raise DeployError(
                f"only {len(idle)} idle clients after {settings.wait_for_clients_s:.0f} s; "
                f"a round needs at least {fewest} (deploy.min_clients)"
            )
        await registry.wait_change(min(0.5, settings.settle_s or 0.5))


def expire_stale_assignments(state: ServerState) -> None:
    """Free clients whose task outlived ``round_timeout_s`` (hung, never uploaded)."""
    now = time.monotonic()
    for session in state.registry.sessions.values():
        task = session.assignment
        if task is not None and now - task.assigned_at > state.settings.round_timeout_s:
            state.registry.release(session.client_id, task.task_id)


def drop_on_disconnect(state: ServerState, session: Session) -> None:
    """A client whose session closed mid-task is a dropout of the live round."""
    live = state.live_round
    task = session.assignment
    if live is not None and task is not None and task.round_idx == live.round_idx:
        live.drop(session.client_id, "connection lost before its update arrived")


async def maybe_evaluate(state: ServerState, round_idx: int) -> tuple[float | None, float | None]:
    """Test accuracy and loss of the new model on ``eval.every`` rounds and the last one."""
    config, parts = state.config, state.parts
    if (round_idx + 1) % config.eval.every and round_idx + 1 != config.rounds:
        return None, None
    result = await asyncio.to_thread(
        evaluate, parts.model, state.weights, parts.test_features, parts.test_labels
    )
    return result.accuracy, result.loss


def record_round(
    state: ServerState,
    live: LiveRound,
    start_s: float,
    wall: float,
    aggregated: bool,
    accuracy: float | None,
    test_loss: float | None,
) -> RoundRecord:
    """The round's record, in the simulator's format (who completed, straggled, dropped).

    Its client timeline (measured phases, :mod:`fedsys.deploy.round_timeline`) goes to
    ``clients.jsonl`` as a simulated round's does.
    """
    live.recorded = True  # outcomes are final from here: a later disconnect is not a dropout
    end_s = state.now_s()
    arrived = {a.client_id for a in live.arrivals}
    stragglers = set(live.assignments) - arrived - set(live.dropped) - live.failed
    samples = sum(a.num_samples for a in live.arrivals if a.loss is not None)
    train_loss = (
        sum(a.loss.mean_loss * a.num_samples for a in live.arrivals if a.loss is not None) / samples
        if samples
        else None
    )
    outcome = {c: "straggled" for c in stragglers}
    outcome.update({c: "dropped" for c in live.dropped})
    outcome.update({c: "rejected" for c in live.failed})
    outcome.update({c: "completed" for c in arrived})
    durations = {a.client_id: a.duration_s for a in live.arrivals}
    processed = {a.client_id: a.loss.samples_seen for a in live.arrivals if a.loss is not None}
    extra: dict[str, Any] = {
        "aggregated": aggregated,
        "clients": [
            {"client_id": c, "outcome": outcome[c], "duration_s": durations.get(c)}
            | ({"reason": live.drop_reasons[c]} if c in live.drop_reasons else {})
            | (
                {
                    "local_steps": live.work[c].steps,
                    "samples_processed": processed.get(c),
                    "upload_fraction": live.work[c].upload_fraction,
                }
                if c in live.work
                else {}
            )
            for c in sorted(live.assignments)
        ],
    }
    if live.late:  # stragglers of earlier rounds aggregated here (round.late_updates)
        extra["late"] = [[f.client_id, f.staleness] for f in live.late]
        extra["late_weights"] = [f.weight for f in live.late]
    if isinstance(live.feed, SecureRound):
        extra["secure_aggregation"] = live.feed.summary()
    if live.rejected:
        extra["rejected_updates"] = [
            {"client_id": c, "reason": reason} for c, reason in live.rejected
        ]
    selected = sorted(live.assignments)
    selector = describe_selector(
        state.parts.selector, state.selector_state, live.round_idx, selected
    )
    extra[TIMELINE_KEY] = deploy_timeline(live, outcome, end_s, selector)
    _LOGGER.info(
        "round finished",
        extra={
            "round": live.round_idx,
            "participants": len(arrived),
            "accuracy": accuracy,
            "peak_rss_mb": round(peak_rss_bytes() / 2**20, 1),
        },
    )
    return RoundRecord(
        round_idx=live.round_idx,
        start_s=start_s,
        end_s=end_s,
        wall_s=time.perf_counter() - wall,
        selected=len(live.assignments),
        participants=len(arrived) if aggregated else 0,
        dropouts=len(live.dropped),
        stragglers=len(stragglers),
        rejected=len(live.rejected),
        bytes_down=live.bytes_down,
        bytes_up=sum(a.upload_bytes for a in live.arrivals)
        + sum(f.upload_bytes for f in live.late),
        train_loss=train_loss,
        accuracy=accuracy,
        test_loss=test_loss,
        extra=extra,
    )

"""When rounds close (sync, deadline, async), when the model is evaluated, and what the
virtual clock charges beyond the devices."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from fedsys.config.settings import Settings

ParticipationSetting = Annotated[
    Literal["selector", "poisson"] | None,
    Field(
        description="selector (the selector picks), or poisson (each available client "
        "joins with probability K/N and the round waits for all of them); unset: poisson "
        "with dp_fedavg and the random selector, else selector"
    ),
]


class LateUpdates(Settings):
    """What happens to a straggler's update that arrives after its round closed.

    ``off`` (the default) discards it, as FedScale does. Any other curve keeps the
    straggler training and aggregates its update into the first round that closes
    after it arrives, ``s`` rounds late, scaled by ``w(s)`` (REFL, EuroSys 2023):
    ``constant`` 1, ``polynomial`` ``(1 + s)^-exponent`` (FedBuff), ``exponential``
    ``exp(-exponent x s)``, ``hinge`` 1 up to ``hinge_after`` rounds, then
    ``1 / (1 + exponent x (s - hinge_after))``.
    """

    curve: Literal["off", "constant", "polynomial", "exponential", "hinge"] = Field(
        "off", description="staleness discount of late updates; off: discard them"
    )
    exponent: float = Field(0.5, ge=0, description="the curve's steepness (see the curves above)")
    hinge_after: int = Field(1, ge=0, description="hinge: rounds of lateness that keep full weight")
    max_staleness: int = Field(
        5, ge=1, description="updates more rounds late than this are discarded"
    )


class LocalWork(Settings):
    """Local work set per participant from its expected time (PyramidFL, MobiCom 2022).

    ``fixed`` (the default): every client runs ``train.local_steps``. ``idle_time``:
    the round's target duration is the expected arrival of its K-th fastest client
    (sync) or the deadline (deadline rounds); a client expected to finish sooner
    spends its idle time on more steps, ``floor(steps x (target - transfers) /
    compute)``, at most ``max_factor`` times ``train.local_steps``; with
    ``partial_upload`` a client expected later than the target uploads only the
    top-k share of its update that lets it arrive by the target (at least
    ``min_upload_fraction``). Both are charged on the virtual clock.
    """

    mode: Literal["fixed", "idle_time"] = Field(
        "fixed", description="fixed: train.local_steps for all; idle_time: see above"
    )
    max_factor: float = Field(
        4.0, ge=1, description="idle_time: most local steps, in multiples of train.local_steps"
    )
    partial_upload: bool = Field(
        False, description="idle_time: slow clients upload a top-k share of their update"
    )
    min_upload_fraction: float = Field(
        0.1, gt=0, le=1, description="partial_upload: smallest share of values uploaded"
    )


LateUpdatesSetting = Annotated[LateUpdates, Field(default_factory=LateUpdates)]
"""``late_updates`` of the sync and deadline modes (each describes it in its own words)."""
LocalWorkSetting = Annotated[
    LocalWork,
    Field(default_factory=LocalWork, description="local steps and upload share per participant"),
]
"""``local_work`` of the sync and deadline modes."""


class SyncRounds(Settings):
    """Select ceil(overcommit × K); the round closes when the K-th client arrives.

    ``participation: poisson`` skips the selector: each available client joins with
    probability K / N and the round waits for all of them (DP-FedAvg's default).
    """

    mode: Literal["sync"] = "sync"
    overcommit: float = Field(
        1.3, ge=1.0, description="select ceil(overcommit x K), close at the K-th arrival"
    )
    participation: ParticipationSetting = None
    late_updates: LateUpdatesSetting = Field(
        description="stragglers' updates aggregated a few rounds late, staleness-discounted"
    )
    local_work: LocalWorkSetting


class DeadlineRounds(Settings):
    """The round closes at a fixed virtual deadline; whoever arrived by then counts."""

    mode: Literal["deadline"] = "deadline"
    deadline_s: float = Field(gt=0, description="virtual seconds a round lasts at most")
    overcommit: float = Field(1.0, ge=1.0, description="select ceil(overcommit x K)")
    min_participants: int = Field(
        1, ge=1, description="arrivals by the deadline a round needs to aggregate"
    )
    on_short_round: Literal["retry", "skip"] = Field(
        "skip",
        description="a round short of min_participants: skip it, or retry it with new clients",
    )
    max_retries: int = Field(
        3, ge=0, description="retry: retries of a short round before it is skipped"
    )
    participation: ParticipationSetting = None
    late_updates: LateUpdatesSetting = Field(
        description="updates arriving after the deadline aggregated a few rounds late"
    )
    local_work: LocalWorkSetting


class AsyncRounds(Settings):
    """FedBuff: up to ``max_concurrency`` clients train at once; aggregate every B arrivals."""

    mode: Literal["async"] = "async"
    max_concurrency: int = Field(100, ge=1, description="clients training at once")
    buffer_size: int = Field(10, ge=1, description="B: arrivals aggregated together")
    max_staleness: int = Field(
        20, ge=0, description="updates more aggregations behind than this are dropped"
    )
    staleness_exponent: float = Field(
        0.5, ge=0, description="an update s aggregations stale weighs 1 / (1 + s)^exponent"
    )


RoundConfig = Annotated[SyncRounds | DeadlineRounds | AsyncRounds, Field(discriminator="mode")]


class EvalConfig(Settings):
    """When and on whom the global model is evaluated.

    The central test set is always used; ``selection`` other than ``all`` also
    evaluates on test participants chosen by Oort's testing selector (``deviation``:
    a random sample sized by the deviation bound; ``category``: the fastest clients
    holding ``samples_per_category`` test samples of every class).
    """

    every: int = Field(5, ge=1, description="evaluate every N rounds and after the last")
    selection: Literal["all", "deviation", "category"] = Field(
        "all",
        description="all: the central test set only; deviation or category: also evaluate "
        "on test participants chosen by Oort's testing selector, reported next to the "
        "central test-set accuracy",
    )
    epsilon: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="deviation: tolerated deviation, at the given confidence, of the mean of "
        "the participants' per-client class shares from the population's. The class mix of "
        "their pooled data is not covered and under size skew can deviate far more (each "
        "evaluation records deviation_bound, share_deviation and pooled_deviation)",
    )
    confidence: float = Field(0.95, gt=0, lt=1, description="deviation: confidence of the bound")
    samples_per_category: int = Field(20, ge=1, description="category: test samples per class")
    budget: int | None = Field(
        None, ge=1, description="category: most participants (null: no limit)"
    )
    method: Literal["fast", "milp"] = Field(
        "fast", description="category: the solver, the fast path or the exact MILP alone"
    )
    category_counts: Literal["truth", "reported"] = Field(
        "truth",
        description="category: per-class counts the selector plans with: the ground truth, "
        "or each device's reported label histogram (fedsys.data.device_stats)",
    )
    counts_epsilon: float | None = Field(
        None,
        gt=0,
        description="reported: make each device's histogram epsilon-DP (Laplace, calibrated "
        "by OpenDP); null: exact histograms",
    )


class ClockConfig(Settings):
    """Server time the virtual clock charges besides the devices' own.

    A real aggregator spends time the device traces do not hold: dispatching tasks,
    receiving and aggregating each update, evaluating and checkpointing between
    rounds; and each task's messages (instruction, model request, upload grant,
    verdict) take a client time its profile does not hold. ``fedsys fidelity
    --calibrate`` measures the three terms on a real deployment.
    """

    server_round_s: float = Field(
        0.0,
        ge=0,
        description="seconds added to every round (dispatch, evaluation, checkpoint, next "
        "selection)",
    )
    server_update_s: float = Field(
        0.0, ge=0, description="seconds added per aggregated update (receive, decode, aggregate)"
    )
    client_task_s: float = Field(
        0.0,
        ge=0,
        description="seconds added to every client's task beyond its device profile (the "
        "protocol's messages: task, model request, upload grant, verdict)",
    )

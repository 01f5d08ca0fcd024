"""Virtual time-to-accuracy of participant selection: random, Oort, the original Oort, and beyond.

Variants train the same federation (same data split, device fleet and model
initialisation per seed); they differ only in who they pick and, for the new ones,
in how rounds use their participants:

* ``random``: uniform, the baseline;
* ``oort``: our Oort with the paper's defaults (Lai et al., OSDI 2021);
* ``oort_original``: the original Oort training selector (SymbioticLab/Oort), imported
  at run time from ``--oort-repo PATH`` and driven as Oort's own simulator drives it
  (``benchmarks/oort_original.py``), same settings as ours; skipped without a checkout;
* ``avail``: Oort behind the availability-aware selector (REFL): never a client
  predicted to leave before it finishes while others can, the soonest-leaving of
  Oort's ``1.5 K`` candidates first;
* ``late``: Oort, stragglers' updates aggregated up to 5 rounds late with weight
  ``(1 + s)^-0.5`` (REFL's stale-update aggregation);
* ``work``: Oort, local steps from idle time up to 4x and top-k partial uploads for
  clients slower than the round's target (PyramidFL);
* ``beyond``: all three together.

Settings
--------
* ``digits dir(0.1)``: today's setting, smaller: 700 digits clients (1,437 samples,
  1 to a few each), Dirichlet(0.1) label skew, the calibrated generated fleet with
  diurnal availability (night-time charging sessions of hours).
* ``mnist1d quantity(1)``: another dataset and partition: 1,000 MNIST-1D clients
  over 16,000 training samples (20,000 generated) with lognormal quantity skew
  (sigma 1) and IID labels.
* ``digits dir(1) short``: a fleet with short sessions: the generated fleet's speeds
  and bandwidths, but sessions of minutes (12 a day on average, median 8 minutes,
  and 30 % of nights a one-hour charge), while a median round takes over a minute
  and slow devices several: picked blindly, some leave mid-round (the ``dropouts``
  column).

Every run: 60 rounds, K = 10 per round, over-commitment 1.3 (sync rounds close at the 10th
arrival), FedAvg, an MLP with one hidden layer of 64, 10 local SGD steps of batch 20
(lr 0.05, momentum 0.9); compute and transfers charged as the traces' MobileNetV2
(``model_cost_ratio 1``, ``transfer_cost_ratio reference``): a median device spends
about 33 s computing and 37 s communicating per round. Accuracy on the central test
set every 3 rounds; target: 95 % of random's plateau (median over seeds of the mean
of its last five evaluations), rounded down to 0.005; time-to-accuracy is the
virtual time of the first evaluation at or above it (``n/r`` if never).

Printed: per setting and variant, the median time-to-target over seeds and the final
accuracy (mean of the last five evaluations); then ``oort_vs_random: X`` (median
over settings of random's median TTA / Oort's), then ``speedup: X``: the median
over settings of the original Oort's median TTA / the best new variant's (our Oort
stands in for the anchor, and says so, when no checkout is given). A setting where
the best new variant is slower than our Oort is named.

Run: ``python benchmarks/selection_tta.py [--oort-repo PATH] [--quick] [--workers 2]
[--seeds 0 1 2 3 4] [--json PATH]``. Five seeds by default: with three, one
setting's medians moved by more than the differences between variants (see
docs/benchmarks/selection_tta.md).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import multiprocessing
import statistics
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
OORT = {"name": "oort"}
LATE = {"curve": "polynomial", "exponent": 0.5, "max_staleness": 5}
WORK = {"mode": "idle_time", "max_factor": 4.0, "partial_upload": True}
AVAIL = {"name": "availability", "base": OORT, "margin": 1.0, "pool": 1.5}
VARIANTS: dict[str, dict[str, Any]] = {
    "random": {"selector": {"name": "random"}},
    "oort": {"selector": OORT},
    "oort_original": {"selector": OORT, "original": True},
    "avail": {"selector": AVAIL},
    "late": {"selector": OORT, "round": {"late_updates": LATE}},
    "work": {"selector": OORT, "round": {"local_work": WORK}},
    "beyond": {"selector": AVAIL, "round": {"late_updates": LATE, "local_work": WORK}},
}
NEW = ("avail", "late", "work", "beyond")
TARGET_FRACTION = 0.95
PLATEAU_EVALS = 5
EVAL_EVERY = 3
LOCAL_STEPS, BATCH = 10, 20


@dataclass(frozen=True)
class Setting:
    """One dataset, partition and fleet."""

    label: str
    dataset: str
    partition: tuple[tuple[str, Any], ...]
    num_clients: int
    rounds: int
    min_samples: int
    num_samples: int = 0
    fleet: str = "diurnal"

    @property
    def cost(self) -> int:
        """Rough work of a run, to start the longest jobs first."""
        return self.rounds * (2 if self.dataset == "mnist1d" else 1)


FULL = (  # 60 rounds: about 15 minutes on 2 shared cores with the original Oort
    Setting("digits dir(0.1)", "digits", (("kind", "dirichlet"), ("alpha", 0.1)), 700, 60, 1),
    Setting(
        "mnist1d quantity(1)",
        "mnist1d",
        (("kind", "quantity"), ("sigma", 1.0)),
        1000,
        60,
        5,
        num_samples=20000,
    ),
    Setting(
        "digits dir(1) short",
        "digits",
        (("kind", "dirichlet"), ("alpha", 1.0)),
        700,
        60,
        1,
        fleet="short",
    ),
)
QUICK = tuple(Setting(**{**asdict(s), "rounds": 30}) for s in FULL)  # type: ignore[arg-type]


def run_config(setting: Setting, variant: str, seed: int) -> dict[str, Any]:
    """The ``RunConfig`` dict of one run."""
    spec = VARIANTS[variant]
    dataset: dict[str, Any] = {
        "name": setting.dataset,
        "num_clients": setting.num_clients,
        "partition": dict(setting.partition),
        "min_samples": setting.min_samples,
    }
    if setting.num_samples:
        dataset["num_samples"] = setting.num_samples
    return {
        "seed": seed,
        "rounds": setting.rounds,
        "clients_per_round": 10,
        "target_accuracy": None,
        "dataset": dataset,
        "model": {"name": "mlp", "hidden": [64]},
        "train": {"local_steps": LOCAL_STEPS, "batch_size": BATCH, "lr": 0.05, "momentum": 0.9},
        "devices": {
            "source": "generated",
            "always_available": False,
            "model_cost_ratio": 1.0,
            "transfer_cost_ratio": "reference",
        },
        "selector": spec["selector"],
        "strategy": {"name": "fedavg"},
        "round": {"mode": "sync", "overcommit": 1.3, **spec.get("round", {})},
        "eval": {"every": EVAL_EVERY},
    }


def short_session_fleet(num_clients: int, seed: int) -> Any:
    """The generated fleet's devices with sessions of minutes instead of hours."""
    from fedsys.traces.generator import FleetProfile, generate_fleet

    profile = FleetProfile(
        night_probability=0.3,
        night_hours_median=1.0,
        day_sessions_per_day=12.0,
        day_start_h=0.0,
        day_end_h=24.0,
        day_minutes_median=8.0,
        day_sigma=0.8,
    )
    return generate_fleet(num_clients, seed, profile)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def simulators(setting: Setting, seed: int, oort_repo: str | None) -> Iterator[tuple[str, Any]]:
    """One simulator per variant; all share one dataset and fleet per seed."""
    from fedsys.config import parse_config
    from fedsys.parts.builders import build_model, charge_transfers, shape_fleet
    from fedsys.sim.assemble import build_round_mode
    from fedsys.sim.simulator import Simulator

    base = None
    for variant, spec in VARIANTS.items():
        if spec.get("original") and oort_repo is None:
            continue
        config = parse_config(run_config(setting, variant, seed))
        if base is None:
            base = Simulator.from_config(config)
            if setting.fleet == "short":
                fleet = shape_fleet(short_session_fleet(setting.num_clients, seed), config.devices)
                base.fleet = charge_transfers(fleet, config.devices, base.model)
        simulator = copy.copy(base)
        if spec.get("original"):
            sys.path.insert(0, str(Path(__file__).parent))
            from oort_original import OriginalOortSelector

            simulator.selector = OriginalOortSelector(oort_repo, LOCAL_STEPS * BATCH, seed)
        else:
            simulator.selector = config.selector.build(config.seed)
        simulator.round_mode = build_round_mode(config.round, config.participation)
        simulator.model = build_model(config.model, base.dataset, config.seed)
        simulator.config = config.model_dump(mode="json")
        yield variant, simulator


def simulate(setting: Setting, seed: int, oort_repo: str | None) -> list[dict[str, Any]]:
    """Run every variant on one (setting, seed); keep what the summary needs."""
    runs = []
    for variant, simulator in simulators(setting, seed, oort_repo):
        started = time.perf_counter()
        result = simulator.run()
        run = describe(result, setting, variant, seed, time.perf_counter() - started)
        run["fallbacks"] = getattr(simulator.selector, "fallbacks_", 0)
        runs.append(run)
    return runs


def describe(result: Any, setting: Setting, variant: str, seed: int, wall_s: float) -> dict:
    """The evaluations and headline numbers of one run."""
    evals = [(r.round_idx, r.end_s, r.accuracy) for r in result.records if r.accuracy is not None]
    return {
        "setting": setting.label,
        "variant": variant,
        "seed": seed,
        "eval_time_s": [e[1] for e in evals],
        "accuracy": [e[2] for e in evals],
        "plateau_accuracy": statistics.fmean(e[2] for e in evals[-PLATEAU_EVALS:]),
        "virtual_time_s": result.records[-1].end_s,
        "median_round_s": statistics.median(r.duration_s for r in result.records),
        "dropouts": sum(r.dropouts for r in result.records),
        "late_updates": sum(len(r.extra.get("late", [])) for r in result.records),
        "wall_s": wall_s,
    }


def time_to(run: dict[str, Any], target: float) -> float:
    """Virtual seconds of the first evaluation at or above ``target`` (inf if none)."""
    for when, accuracy in zip(run["eval_time_s"], run["accuracy"], strict=True):
        if accuracy >= target:
            return float(when)
    return math.inf


def _median(values: list[float]) -> float:
    """Median where ``inf`` (never reached) sorts last."""
    return float(statistics.median(sorted(values)))


def summarise(settings: tuple[Setting, ...], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per setting and variant: median time-to-target and final accuracy; the headline ratios."""
    by_key = {(r["setting"], r["variant"], r["seed"]): r for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in runs)]
    anchor = "oort_original" if "oort_original" in variants else "oort"
    rows, oort_vs_random, speedups, slower = [], [], [], []
    for setting in settings:
        base = [by_key[(setting.label, "random", s)] for s in seeds]
        plateau = statistics.median(r["plateau_accuracy"] for r in base)
        target = math.floor(TARGET_FRACTION * plateau * 200 + 1e-9) / 200
        tta: dict[str, float] = {}
        for variant in variants:
            mine = [by_key[(setting.label, variant, s)] for s in seeds]
            times = [time_to(r, target) for r in mine]
            tta[variant] = _median(times)
            rows.append(
                {
                    "setting": setting.label,
                    "variant": variant,
                    "target": target,
                    "tta_h": [t / 3600.0 for t in times],
                    "median_tta_h": tta[variant] / 3600.0,
                    "reached": sum(math.isfinite(t) for t in times),
                    "final_accuracy": statistics.fmean(r["plateau_accuracy"] for r in mine),
                    "median_round_s": statistics.median(r["median_round_s"] for r in mine),
                    "dropouts": statistics.median(r["dropouts"] for r in mine),
                    "late_updates": statistics.median(r["late_updates"] for r in mine),
                    "fallbacks": sum(r.get("fallbacks", 0) for r in mine),
                }
            )
        best = min(NEW, key=lambda v: tta[v])
        oort_vs_random.append(_ratio(tta["random"], tta["oort"]))
        speedups.append(_ratio(tta[anchor], tta[best]))
        if tta[best] > tta["oort"]:
            slower.append(setting.label)
        rows.append({"setting": setting.label, "best_new": best, "speedup": speedups[-1]})
    return {
        "rows": rows,
        "anchor": anchor,
        "oort_vs_random": statistics.median(oort_vs_random),
        "speedups": speedups,
        "speedup": statistics.median(speedups),
        "slower_than_oort": slower,
    }


def _ratio(reference_s: float, mine_s: float) -> float:
    """``reference / mine``; a variant that never got there is 0, both never: 1."""
    if math.isinf(mine_s):
        return 1.0 if math.isinf(reference_s) else 0.0
    return math.inf if math.isinf(reference_s) else reference_s / mine_s


def print_table(summary: dict[str, Any], seeds: int) -> None:
    """One line per setting and variant, then each setting's best new variant."""
    header = (
        f"{'setting':<20} {'variant':<14} {'target':>6} {'reached':>7} {'TTA h median':>12} "
        f"{'[min-max]':>15} {'final acc':>9} {'round s':>8} {'dropouts':>8} {'late':>5}"
    )
    print(header)
    print("-" * len(header))
    for row in summary["rows"]:
        if "best_new" in row:
            print(
                f"{row['setting']:<20} best new variant: {row['best_new']}, "
                f"{summary['anchor']} / it = {row['speedup']:.2f}x"
            )
            print("-" * len(header))
            continue
        span = f"[{_h(min(row['tta_h']))}-{_h(max(row['tta_h']))}]"
        note = f"  ({row['fallbacks']} upstream fallbacks)" if row["fallbacks"] else ""
        print(
            f"{row['setting']:<20} {row['variant']:<14} {row['target']:>6.3f} "
            f"{row['reached']:>5}/{seeds} {_h(row['median_tta_h']):>12} {span:>15} "
            f"{row['final_accuracy']:>9.3f} {row['median_round_s']:>8.1f} "
            f"{row['dropouts']:>8.0f} {row['late_updates']:>5.0f}{note}"
        )


def _h(hours: float) -> str:
    return f"{hours:.2f}" if math.isfinite(hours) else "n/r"


def _finite(value: Any) -> Any:
    """``value`` with infinite floats (targets never reached) as ``None``, for JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--oort-repo", type=Path, help="a checkout of SymbioticLab/Oort")
    parser.add_argument("--quick", action="store_true", help="30 rounds a run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=RESULTS / "selection_tta.json")
    args = parser.parse_args()

    repo = None
    if args.oort_repo is not None:
        if not (args.oort_repo / "oort" / "oort.py").is_file():
            parser.error(f"--oort-repo {args.oort_repo} has no oort/oort.py (not an Oort checkout)")
        repo = str(args.oort_repo.resolve())
    settings = QUICK if args.quick else FULL
    jobs = sorted(((s, seed) for s in settings for seed in args.seeds), key=lambda j: -j[0].cost)
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.workers, mp_context=context, initializer=_init_worker) as pool:
        batches = pool.map(simulate, *zip(*jobs, strict=True), [repo] * len(jobs))
        runs = [run for batch in batches for run in batch]
    wall_s = time.perf_counter() - started

    summary = summarise(settings, runs)
    variants = len({r["variant"] for r in runs})
    print(
        f"selection_tta: {len(settings)} settings x {len(args.seeds)} seeds x {variants} "
        f"variants, K=10, over-commitment 1.3; wall {wall_s:.0f} s on {args.workers} workers"
    )
    print(
        f"target = {TARGET_FRACTION:.0%} of random's plateau; TTA in virtual hours, median "
        f"over seeds; final acc = mean of the last {PLATEAU_EVALS} evaluations; round s, "
        "dropouts, late = medians per run; n/r = not reached"
    )
    if repo is None:
        print(
            "oort_original: skipped (no --oort-repo checkout of SymbioticLab/Oort given); "
            "speedup is against our Oort instead"
        )
    print_table(summary, len(args.seeds))
    for label in summary["slower_than_oort"]:
        print(f"note: in {label} the best new variant is slower than our Oort")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "settings": [asdict(s) for s in settings],
        "seeds": args.seeds,
        "variants": VARIANTS,
        "oort_repo": repo,
        "config_example": run_config(settings[0], "beyond", args.seeds[0]),
        "summary": summary,
        "runs": runs,
        "wall_s": wall_s,
    }
    args.json.write_text(json.dumps(_finite(payload), indent=1, allow_nan=False))
    print(f"speedup anchor: {summary['anchor']} (its median TTA / the best new variant's)")
    print(f"oort_vs_random: {summary['oort_vs_random']:.2f}x")
    print(f"speedup: {summary['speedup']:.2f}x")


if __name__ == "__main__":
    main()

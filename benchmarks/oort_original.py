"""The original Oort training selector (SymbioticLab/Oort), driven through our Selector interface.

Nothing of Oort is copied here: :func:`load_training_selector` imports ``oort/oort.py``
from a checkout the user gives (``--oort-repo PATH``) at run time. Its package
``__init__`` also pulls in the testing selector's LP module, which needs Gurobi; the
training selector never calls it, so that one module is replaced by an empty stand-in.

:class:`OriginalOortSelector` feeds the upstream object as Oort's own simulator
(``training/helper/clientSampler.py`` and ``param_server.py``) does:

* a client is registered the first time it is available, with reward
  ``min(size, local_steps x batch)`` and its expected round duration;
* the first round is a uniform random draw (the reference ``resampleClients`` does
  that on its first call); later rounds call ``select_participant(k, feasible)``;
* a completed client reports reward ``|B| x sqrt(mean loss^2)`` (Oort's statistical
  utility, as our Oort computes it), its round as 1-based time stamp and its duration;
  an explored straggler the mean reward of the round's completed clients
  (``success=False``); a dropout nothing.

The upstream object is mutable; it is the "state" this adapter hands back, so a run
cannot be resumed from a checkpoint (the benchmark never does).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedsys.core.update import ClientId, ClientReport
from fedsys.selection.base import Selector

_PACKAGE = "_oort_upstream"


def load_training_selector(repo: Path) -> Callable[[Any], Any]:
    """``create_training_selector`` of the Oort checkout at ``repo``.

    Raises
    ------
    FileNotFoundError
        If ``repo`` has no ``oort/oort.py``.
    """
    source = Path(repo) / "oort" / "oort.py"
    if not source.is_file():
        raise FileNotFoundError(f"{repo} is not a SymbioticLab/Oort checkout (no oort/oort.py)")
    if f"{_PACKAGE}.oort" in sys.modules:
        return sys.modules[f"{_PACKAGE}.oort"].create_training_selector
    package = types.ModuleType(_PACKAGE)
    package.__path__ = [str(source.parent)]
    utils = types.ModuleType(f"{_PACKAGE}.utils")
    utils.__path__ = []
    lp = types.ModuleType(f"{_PACKAGE}.utils.lp")  # the testing selector's Gurobi LP: unused
    sys.modules.update({_PACKAGE: package, utils.__name__: utils, lp.__name__: lp})
    spec = importlib.util.spec_from_file_location(f"{_PACKAGE}.oort", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.create_training_selector


def upstream_args(settings: dict[str, Any]) -> argparse.Namespace:
    """Oort's argument namespace with our Oort's settings (paper defaults)."""
    return argparse.Namespace(
        exploration_factor=settings.get("exploration_factor", 0.9),
        exploration_decay=settings.get("exploration_decay", 0.98),
        exploration_min=settings.get("exploration_min", 0.3),
        exploration_alpha=0.3,
        round_threshold=settings.get("round_threshold", 30.0),
        round_penalty=settings.get("round_penalty", 2.0),
        pacer_step=settings.get("pacer_step", 20),
        pacer_delta=settings.get("pacer_delta", 5.0),
        clip_bound=settings.get("clip_bound", 0.95),
        cut_off_util=settings.get("cut_off_util", 0.95),
        sample_window=settings.get("sample_window", 5.0),
        blacklist_rounds=-1,
        blacklist_max_len=0.3,
    )


class OriginalOortSelector(Selector[Any]):
    """Adapter: the upstream ``_training_selector`` behind ``select``/``feedback``.

    Parameters
    ----------
    repo
        Path of a SymbioticLab/Oort checkout.
    reward_cap
        ``local_steps x batch_size``: a client's initial reward is ``min(size, cap)``.
    seed
        Seeds the upstream selector and the first round's random draw.
    """

    def __init__(self, repo: str, reward_cap: int, seed: int = 0) -> None:
        self.repo = repo
        self.reward_cap = reward_cap
        self.seed = seed
        self.sizes_: dict[int, float] = {}
        self.expected_: dict[int, float] = {}
        self.fallbacks_ = 0
        """Rounds the upstream code raised on (too few explored clients) and we drew randomly."""

    def init_state(self) -> Any:
        """A fresh upstream training selector."""
        create = load_training_selector(Path(self.repo))
        return create(upstream_args({}))

    def with_priors(
        self, state: Any, num_samples: np.ndarray, expected_duration_s: np.ndarray | None = None
    ) -> Any:
        """Remember sizes and expected durations; clients register when first offered."""
        for cid in np.flatnonzero(np.isfinite(num_samples)).tolist():
            self.sizes_[cid] = float(num_samples[cid])
            if expected_duration_s is not None and np.isfinite(expected_duration_s[cid]):
                self.expected_[cid] = float(expected_duration_s[cid])
        return state

    def select(
        self, state: Any, round_idx: int, available: np.ndarray, k: int, now_s: float
    ) -> tuple[list[ClientId], Any]:
        """Round 0: random, as the reference sampler; then the upstream ``select_participant``."""
        ids = [int(c) for c in np.asarray(available).tolist()]
        for cid in ids:
            if cid not in state.totalArms:
                size = self.sizes_.get(cid, float(self.reward_cap))
                duration = self.expected_.get(cid, 1.0)
                state.register_client(
                    cid, {"reward": min(size, self.reward_cap), "duration": duration}
                )
        rng = np.random.default_rng([self.seed, round_idx])
        if len(ids) <= k:
            return ids, state
        if round_idx == 0:
            return [int(c) for c in rng.choice(ids, size=k, replace=False)], state
        try:
            picked = [int(c) for c in state.select_participant(k, feasible_clients=set(ids))]
        except (IndexError, ValueError):
            self.fallbacks_ += 1
            picked = [int(c) for c in rng.choice(ids, size=k, replace=False)]
        return picked, state

    def feedback(self, state: Any, reports: Sequence[ClientReport]) -> Any:
        """Completed: utility and duration; explored stragglers: the round's mean utility."""
        utilities = []
        for report in reports:
            if report.outcome != "completed" or report.loss is None:
                continue
            unique = min(report.samples_processed or report.num_samples, report.num_samples)
            reward = unique * math.sqrt(report.loss.sum_sq_loss / max(report.loss.samples_seen, 1))
            utilities.append(reward)
            state.update_client_util(
                report.client_id,
                {
                    "reward": reward,
                    "duration": report.duration_s,
                    "time_stamp": report.round_idx + 1,
                    "status": True,
                },
            )
        mean = sum(utilities) / len(utilities) if utilities else 0.0
        for report in reports:
            arm = state.totalArms.get(report.client_id)
            if report.outcome == "straggled" and arm is not None and arm["count"] > 0:
                state.update_client_util(
                    report.client_id,
                    {
                        "reward": mean,
                        "duration": report.duration_s,
                        "time_stamp": report.round_idx + 1,
                        "status": False,
                    },
                )
        return state

    def describe(self) -> dict[str, Any]:
        """Settings for logs."""
        return {"name": "oort_original", "repo": self.repo, "seed": self.seed}

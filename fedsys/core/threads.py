"""How many PyTorch intra-op threads a training process uses: one rule for every runtime.

A federated client's local step is small (a mini-batch of tens of samples through a
model of thousands to hundreds of thousands of parameters). PyTorch's default pool (one
thread per core) splits each such step across every core, and its threads spin while
they wait: on an idle machine that buys nothing, and beside any other busy process the
threads fight for the cores and a run takes several times longer. So ``auto`` trains on
one thread unless the model is large enough for a step to gain from more (see
:data:`AUTO_MIN_PARAMETERS` for the measurement behind the threshold).

The simulator, Ray actors, deployment clients and device hosts, and silo workers all
call :func:`use_torch_threads` with the run's ``sim.threads``.
"""

from __future__ import annotations

import os
from typing import Literal

import torch
from torch import nn

__all__ = [
    "AUTO_MIN_PARAMETERS",
    "ThreadsSetting",
    "available_cores",
    "num_parameters",
    "planned_threads",
    "torch_threads",
    "use_torch_threads",
]

ThreadsSetting = int | Literal["auto"]
"""``sim.threads``: a number of threads, or ``auto`` (:func:`torch_threads`)."""

AUTO_MIN_PARAMETERS = 10_000_000
"""Parameters from which ``auto`` gives a training process more than one thread.

Measured with ``benchmarks/torch_threads.py`` on a 2-core AMD EPYC shared with other
work (PyTorch 2.13, MKL, OpenMP): a client's 10 SGD steps on batches of 20 through an
MLP (784 inputs, one hidden layer), one thread against PyTorch's default of two. Two
threads were slower at every size up to 6.5M parameters, quiet (speedup 0.11-0.37 from
51k to 6.5M parameters) and beside a CPU-bound process (0.06-0.37); they first broke
even around 13M (1.02). So a small model (fedsys's default MLP has about 5k parameters)
trains on one thread, and only a model of 10M parameters or more, whose steps carry
enough work per synchronisation, gets its share of the cores.
"""


def available_cores() -> int:
    """Cores this process may run on, capped by ``OMP_NUM_THREADS`` when it is set.

    A launcher that starts several training processes on one machine sets
    ``OMP_NUM_THREADS`` (fedsys's own launchers set 1), which this respects.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    limit = os.environ.get("OMP_NUM_THREADS", "")
    if limit.isdigit() and int(limit) > 0:
        cores = min(cores, int(limit))
    return max(1, cores)


def torch_threads(
    setting: ThreadsSetting,
    num_parameters: int,
    processes: int = 1,
    cores: int | None = None,
) -> int:
    """The intra-op threads of one training process.

    Parameters
    ----------
    setting
        A positive number (used as is) or ``auto``: one thread below
        :data:`AUTO_MIN_PARAMETERS`, else an equal share of the cores.
    num_parameters
        Size of the model trained.
    processes
        Training processes sharing these cores (Ray actors, silo workers).
    cores
        Cores to share; default :func:`available_cores`.

    Raises
    ------
    ValueError
        If ``setting`` is neither a positive integer nor ``auto``.
    """
    if setting == "auto":
        if num_parameters < AUTO_MIN_PARAMETERS:
            return 1
        return max(1, (cores or available_cores()) // max(1, processes))
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ValueError(f"threads must be a positive integer or 'auto', got {setting!r}")
    return setting


def planned_threads(setting: ThreadsSetting, num_parameters: int) -> int | Literal["auto"]:
    """The threads every training process of a run uses, or ``auto`` where that
    depends on each machine's cores (a large model under ``auto``)."""
    if setting == "auto" and num_parameters >= AUTO_MIN_PARAMETERS:
        return "auto"
    return torch_threads(setting, num_parameters)


def num_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


def use_torch_threads(setting: ThreadsSetting, model: nn.Module, processes: int = 1) -> int:
    """Set this process's PyTorch intra-op threads for training ``model``; return them."""
    threads = torch_threads(setting, num_parameters(model), processes)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads

"""The examples a new user starts from stay valid and run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fedsys.config.loader import load_config
from fedsys.parts.builders import build_model
from fedsys.sim.simulator import Simulator

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("config", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_config_is_valid(config: str) -> None:
    loaded = load_config(EXAMPLES / config)

    assert loaded.rounds >= 1


# Cross-silo jobs are not run configs: they are defined in Python (JobBuilder) or by
# ``fedsys silo coordinator --job ...`` flags, which the benchmark's docstring lists.
# Federated queries run on sites.yaml setups the benchmark generates; grpc_tls_floor
# measures a bare gRPC server with no run at all; backends_workload and flower_side are
# modules of backends.py (the workload, and the side that runs in Flower's venv);
# torch_threads times bare PyTorch steps of MLPs of several sizes; oort_original is the
# adapter selection_tta.py drives the original Oort through; federation submits its
# queries and training jobs to a standing federation it builds itself; dashboard
# writes the long run it times itself (a cheap model, 2,000 rounds).
NOT_RUN_CONFIGS = {
    "torch_threads",
    "silo_wan",
    "analytics_wan",
    "grpc_tls_floor",
    "backends_workload",
    "flower_side",
    "oort_original",
    "federation",
    "dashboard",
}


def test_there_is_a_config_per_benchmark() -> None:
    benchmarks = {p.stem for p in (EXAMPLES.parent / "benchmarks").glob("*.py")} - NOT_RUN_CONFIGS

    assert benchmarks <= {p.stem for p in EXAMPLES.glob("*.yaml")}


def test_the_scale_config_builds_its_data_by_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(EXAMPLES.parent)
    config = load_config(EXAMPLES / "sim_scale.yaml", {"dataset.num_clients": 300})

    simulator = Simulator.from_config(config)

    assert simulator.dataset.num_clients == 300
    assert simulator.dataset.client_sizes.sum() == 300 * 20


def test_custom_model_script_trains_its_own_model(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "custom_model.py"), "--rounds", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    assert "custom model: final accuracy" in proc.stdout


def test_model_factory_is_called_with_shape_and_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    config = load_config(
        EXAMPLES / "sim_overhead.yaml", {"model.factory": "custom_model:small_cnn"}
    )
    dataset = Simulator.from_config(config).dataset

    first = build_model(config.model, dataset, seed=0)
    again = build_model(config.model, dataset, seed=0)

    assert type(first[1]).__name__ == "Conv2d"
    for a, b in zip(first.parameters(), again.parameters(), strict=True):
        assert bool((a == b).all())

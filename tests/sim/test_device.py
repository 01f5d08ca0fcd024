"""``train.device``: where local training runs; tests stay on the CPU."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from fedsys.cli import main
from fedsys.config.loader import ConfigError
from fedsys.sim.device import dataset_on, model_on, resolve_device
from fedsys.sim.rounds.sync import SyncRounds
from fedsys.traces.fleet import DeviceFleet
from tests.sim.federation import make_simulator, tiny_dataset, tiny_model

NO_GPU = not torch.cuda.is_available()


def test_cpu_and_auto_without_a_gpu_give_the_same_run() -> None:
    runs = []
    for device in ("cpu", "auto"):
        sim = make_simulator(DeviceFleet.always_available(6), SyncRounds(), rounds=3)
        sim.device = device
        runs.append(
            [{k: v for k, v in asdict(r).items() if k != "wall_s"} for r in sim.run().records]
        )

    assert resolve_device("auto").type == ("cpu" if NO_GPU else "cuda")
    if NO_GPU:
        assert runs[0] == runs[1]


def test_on_the_cpu_data_and_model_are_used_as_they_are() -> None:
    dataset, model = tiny_dataset(3), tiny_model()

    assert dataset_on(dataset, torch.device("cpu")) is dataset
    assert model_on(model, torch.device("cpu")) is model


@pytest.mark.skipif(not NO_GPU, reason="a CUDA GPU is visible")
def test_cuda_without_a_gpu_is_a_clean_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_device("cuda")

    out = tmp_path / "run"
    code = main(["run", "--quiet", "--set", "train.device=cuda", "--output-dir", str(out)])

    err = capsys.readouterr().err
    assert code == 2 and "train.device=cuda" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # refused before anything was written

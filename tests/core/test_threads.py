"""The rule sizing PyTorch's threads for a training process (``sim.threads``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedsys.core.threads import (
    AUTO_MIN_PARAMETERS,
    available_cores,
    planned_threads,
    torch_threads,
    use_torch_threads,
)


def test_auto_is_one_thread_for_a_small_model() -> None:
    assert torch_threads("auto", 5_000, cores=16) == 1
    assert torch_threads("auto", AUTO_MIN_PARAMETERS - 1, cores=16) == 1


def test_auto_shares_the_cores_for_a_large_model() -> None:
    assert torch_threads("auto", AUTO_MIN_PARAMETERS, cores=16) == 16
    assert torch_threads("auto", AUTO_MIN_PARAMETERS, processes=4, cores=16) == 4
    assert torch_threads("auto", AUTO_MIN_PARAMETERS, processes=32, cores=16) == 1


def test_a_number_is_used_as_given() -> None:
    assert torch_threads(3, 10, cores=2) == 3
    assert torch_threads(1, AUTO_MIN_PARAMETERS * 10, cores=64) == 1


@pytest.mark.parametrize("setting", [0, -1, "many", True, 2.5])
def test_a_setting_that_is_no_count_is_refused(setting: object) -> None:
    with pytest.raises(ValueError, match="threads"):
        torch_threads(setting, 10)  # type: ignore[arg-type]


def test_omp_num_threads_caps_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert available_cores() == 1
    assert torch_threads("auto", AUTO_MIN_PARAMETERS) == 1


def test_planned_threads_say_auto_only_where_the_machine_decides() -> None:
    assert planned_threads("auto", 5_000) == 1
    assert planned_threads(2, 5_000) == 2
    assert planned_threads("auto", AUTO_MIN_PARAMETERS) == "auto"


def test_use_torch_threads_sets_the_process_threads() -> None:
    before = torch.get_num_threads()
    try:
        assert use_torch_threads(2, nn.Linear(3, 2)) == 2
        assert torch.get_num_threads() == 2
        assert use_torch_threads("auto", nn.Linear(3, 2)) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)

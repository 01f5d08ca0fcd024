import io
import json

import numpy as np
import pytest
import torch

from fedsys.aggregation import FedAdam, FedAvgM
from fedsys.core import statefile
from fedsys.core.update import ClientReport, LossStats
from fedsys.core.weights import ModelWeights
from fedsys.selection import OortSelector


def test_strategy_and_selector_states_round_trip():
    weights = ModelWeights.from_tensors({"w": torch.randn(4, 3), "b": torch.randn(3)})
    adam = FedAdam().init_state(weights)
    momentum = FedAvgM().init_state(weights)
    oort = OortSelector(seed=1)
    state = oort.init_state()
    _, state = oort.select(state, 0, np.arange(20), 5, 0.0)
    report = ClientReport(3, 0, 12.5, 40, True, LossStats(0.5, 11.0, 40))
    state = oort.feedback(state, [report])
    value = {"adam": adam, "momentum": momentum, "oort": state, "nums": (1, 2.5, float("nan"))}
    back = statefile.loads(statefile.dumps(value))
    torch.testing.assert_close(back["adam"].m, adam.m)
    torch.testing.assert_close(back["adam"].v, adam.v)
    assert back["adam"].step == adam.step
    torch.testing.assert_close(back["momentum"].velocity, momentum.velocity)
    np.testing.assert_array_equal(back["oort"].utility, state.utility)
    np.testing.assert_array_equal(back["oort"].explored, state.explored)
    assert back["nums"][:2] == (1, 2.5) and np.isnan(back["nums"][2])
    # The rebuilt state drives the selector exactly like the original.
    assert (
        oort.select(back["oort"], 1, np.arange(20), 5, 0.0)[0]
        == oort.select(state, 1, np.arange(20), 5, 0.0)[0]
    )


def test_types_outside_fedsys_are_refused():
    structure = json.dumps({"dataclass": "subprocess:Popen", "fields": {}}).encode()
    buffer = io.BytesIO()
    np.savez(buffer, __structure__=np.frombuffer(structure, dtype=np.uint8))
    with pytest.raises(statefile.StateFileError, match="outside fedsys"):
        statefile.loads(buffer.getvalue())


def test_garbage_is_a_clear_error():
    with pytest.raises(statefile.StateFileError, match="unreadable"):
        statefile.loads(b"not an archive")

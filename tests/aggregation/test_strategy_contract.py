"""The contract every strategy keeps, checked over every config name."""

import dataclasses
import io

import numpy as np
import pytest
import torch
from pydantic import TypeAdapter, ValidationError

from fedsys.aggregation import Strategy, StrategyConfig
from fedsys.core.update import ClientUpdate
from fedsys.core.weights import ModelWeights, TensorSpec, WeightsMismatchError

from .helpers import flat, update_of, weights_of

ADAPTER = TypeAdapter(StrategyConfig)

# Per name: config fields needed for the contract (K is the number of updates per round).
FIELDS = {
    "fedavg": {},
    "fedavgm": {},
    "fedprox": {},
    "fedadagrad": {},
    "fedadam": {},
    "fedyogi": {},
    "qfedavg": {"client_lr": 0.1, "q": 0.0},
    "median": {},
    "trimmed_mean": {"trim_fraction": 0.2},
    "krum": {"num_byzantine": 1},
    "multikrum": {"num_byzantine": 1},
    "dp_fedavg": {"noise_multiplier": 0.0, "clip_norm": 100.0, "population_size": 100},
}
# Rules whose K identical updates move the model by exactly that update.
PLAIN = {"fedavg", "fedavgm", "fedprox", "qfedavg", "median", "trimmed_mean", "krum", "multikrum"}
PLAIN |= {"dp_fedavg"}
NAMES = sorted(FIELDS)


def build(name: str, k: int, **overrides) -> Strategy:
    fields = {"name": name, **FIELDS[name], **overrides}
    if name == "dp_fedavg":
        fields.setdefault("clients_per_round", k)
    return ADAPTER.validate_python(fields).build(seed=1)


def varied_updates(k: int, round_idx: int) -> list[ClientUpdate]:
    generator = torch.Generator().manual_seed(round_idx)
    return [
        update_of(
            torch.randn(4, generator=generator).tolist(),
            client_id=i,
            num_samples=i + 1,
            loss=0.5 + i,
        )
        for i in range(k)
    ]


def test_every_name_of_the_union_is_covered():
    union_names = {cls.model_fields["name"].default for cls in StrategyConfig.__origin__.__args__}

    assert union_names == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_identical_updates_act_like_one(name):
    weights = weights_of([1, 2, 3, 4])
    same = update_of([0.5, -0.25, 0.125, 1.0], loss=1.0)
    results = []
    for k in (5, 7):
        strategy = build(name, k)
        new, _ = strategy.aggregate(weights, [same] * k, strategy.init_state(weights))
        results.append(flat(new))

    np.testing.assert_allclose(results[0], results[1], rtol=1e-6)
    if name in PLAIN:
        np.testing.assert_allclose(results[0], [1.5, 1.75, 3.125, 5.0], rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_same_inputs_same_outputs(name):
    overrides = {"noise_multiplier": 1.0} if name == "dp_fedavg" else {}
    weights = weights_of([1, 2, 3, 4])
    outputs = []
    for _ in range(2):
        strategy = build(name, 5, **overrides)
        state = strategy.init_state(weights)
        current = weights
        for round_idx in range(2):
            current, state = strategy.aggregate(current, varied_updates(5, round_idx), state)
        outputs.append(flat(current))

    np.testing.assert_array_equal(outputs[0], outputs[1])


@pytest.mark.parametrize("name", NAMES)
def test_one_shot_iterator_is_enough(name):
    weights = weights_of([1, 2, 3, 4])
    strategy = build(name, 5)
    state = strategy.init_state(weights)

    from_list, _ = strategy.aggregate(weights, varied_updates(5, 0), state)
    from_iter, _ = strategy.aggregate(weights, iter(varied_updates(5, 0)), state)

    np.testing.assert_array_equal(flat(from_list), flat(from_iter))


def checkpoint(state):
    """Save a state as a checkpoint would (tensors and numbers only) and load it back."""
    if state is None:
        return None
    buffer = io.BytesIO()
    torch.save(dataclasses.asdict(state), buffer)
    buffer.seek(0)
    return type(state)(**torch.load(buffer, weights_only=True))


@pytest.mark.parametrize("name", NAMES)
def test_state_is_a_value_that_round_trips(name):
    overrides = {"noise_multiplier": 1.0} if name == "dp_fedavg" else {}
    strategy = build(name, 5, **overrides)
    weights = weights_of([1, 2, 3, 4])
    state0 = strategy.init_state(weights)
    snapshot = checkpoint(state0)

    w1, state1 = strategy.aggregate(weights, varied_updates(5, 0), state0)
    straight, _ = strategy.aggregate(w1, varied_updates(5, 1), state1)
    resumed, _ = build(name, 5, **overrides).aggregate(w1, varied_updates(5, 1), checkpoint(state1))

    np.testing.assert_array_equal(flat(straight), flat(resumed))
    if state0 is not None:  # aggregate did not mutate the state it was given
        for field in dataclasses.fields(state0):
            before, after = getattr(snapshot, field.name), getattr(state0, field.name)
            if isinstance(before, torch.Tensor):
                assert torch.equal(before, after)
            else:
                assert before == after


@pytest.mark.parametrize("name", NAMES)
def test_no_update_and_wrong_layout_raise(name):
    strategy = build(name, 5)
    weights = weights_of([1, 2, 3, 4])
    state = strategy.init_state(weights)
    other = ModelWeights((TensorSpec("x", (4,)),), torch.zeros(4))
    wrong = [ClientUpdate(i, other, num_samples=1) for i in range(5)]

    if getattr(strategy, "releases_empty_rounds", False):  # DP: a noise-only release
        new, _ = strategy.aggregate(weights, [], state)
        assert new.flat.shape == weights.flat.shape
    else:
        with pytest.raises(ValueError, match="no client update"):
            strategy.aggregate(weights, [], state)
    with pytest.raises(WeightsMismatchError):
        strategy.aggregate(weights, wrong, state)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_key_is_named(name):
    fields = {"name": name, **FIELDS[name], "clients_per_round": 5, "bogus_key": 1}
    if name != "dp_fedavg":
        fields.pop("clients_per_round")

    with pytest.raises(ValidationError, match="bogus_key"):
        ADAPTER.validate_python(fields)


def test_only_fedprox_asks_clients_for_a_proximal_term():
    mus = {name: build(name, 5).client_proximal_mu for name in NAMES}

    assert mus.pop("fedprox") == 0.01
    assert set(mus.values()) == {0.0}

"""OpenDP noise within its stated error, and a budget that holds across restarts."""

import json

import numpy as np
import pytest

from fedsys.analytics.dp import PrivacySpec, make_noise
from fedsys.analytics.ledger import BudgetExceededError, PrivacyLedger


@pytest.mark.parametrize(("mechanism", "delta"), [("laplace", 0.0), ("gaussian", 1e-6)])
def test_noise_falls_within_the_mechanism_error_on_repeated_runs(mechanism, delta):
    noise = make_noise(sensitivity=10.0, epsilon=0.5, delta=delta, mechanism=mechanism)
    if mechanism == "laplace":
        np.testing.assert_allclose(noise.scale, 10.0 / 0.5, rtol=1e-6)  # b = sensitivity / eps
    errors = np.array([noise(1000.0) - 1000.0 for _ in range(2000)])
    bound = noise.error_bound(beta=0.05)
    inside = np.mean(np.abs(errors) <= bound)
    assert 0.93 <= inside <= 0.97  # P(|noise| <= bound) = 0.95; 2000 draws: +-0.015 at 3 sd
    expected_sd = noise.scale * (np.sqrt(2) if mechanism == "laplace" else 1.0)
    np.testing.assert_allclose(errors.std(), expected_sd, rtol=0.1)
    assert abs(errors.mean()) < 4 * expected_sd / np.sqrt(len(errors))


def test_privacy_spec_names_bad_settings():
    with pytest.raises(ValueError, match="epsilon"):
        PrivacySpec(epsilon=0)
    with pytest.raises(ValueError, match="delta"):
        PrivacySpec(epsilon=1, mechanism="gaussian")
    with pytest.raises(ValueError, match="bounds for column 'x'"):
        PrivacySpec(epsilon=1).bound_of("x")


def test_budget_is_enforced_across_restarts(tmp_path):
    path = tmp_path / "ledger.json"
    PrivacyLedger(path, budget_epsilon=1.0).charge("sales", 0.6, 0.0, "q1")
    # A new ledger object on the same file is a restarted coordinator.
    restarted = PrivacyLedger(path, budget_epsilon=1.0)
    assert restarted.spent("sales").epsilon == pytest.approx(0.6)
    with pytest.raises(BudgetExceededError, match="budget of dataset 'sales' exceeded"):
        restarted.charge("sales", 0.5, 0.0, "q2")
    assert restarted.spent("sales").queries == 1  # the refused query left no charge
    restarted.charge("other", 0.5, 0.0, "q3")  # budgets are per dataset
    restarted.charge("sales", 0.4, 0.0, "q4")
    data = json.loads(path.read_text())
    assert [e["query"] for e in data["datasets"]["sales"]] == ["q1", "q4"]


def test_a_corrupt_ledger_is_a_clear_error(tmp_path):
    path = tmp_path / "ledger.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        PrivacyLedger(path, 1.0).spent("x")

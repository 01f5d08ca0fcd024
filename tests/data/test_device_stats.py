"""Device-population statistics: exact and differentially private reports."""

import numpy as np
import pytest

from fedsys.aggregation.noise import laplace_tail
from fedsys.data.device_stats import feature_summary, label_histograms


def _counts():
    return np.random.default_rng(0).integers(0, 40, size=(500, 10))


def test_exact_reports_are_the_truth_and_sum_to_the_population():
    counts = _counts()
    stats = label_histograms(counts)
    np.testing.assert_array_equal(stats.per_client, counts)
    np.testing.assert_array_equal(stats.population, counts.sum(axis=0))
    assert stats.noise_scale is None


def test_private_reports_are_noisy_within_the_laplace_error_and_reproducible():
    counts = _counts()
    stats = label_histograms(counts, epsilon=0.5, seed=3)
    assert stats.noise_scale == pytest.approx(2.0)  # sensitivity 1 / epsilon, by OpenDP
    assert stats.per_client.dtype == np.int64 and stats.per_client.min() >= 0
    errors = (stats.per_client - counts)[counts > 10]  # away from the floor at 0
    inside = np.mean(np.abs(errors) <= laplace_tail(2.0, 0.05) + 0.5)  # + rounding
    assert inside >= 0.94
    assert not np.array_equal(stats.per_client, counts)
    np.testing.assert_array_equal(label_histograms(counts, epsilon=0.5, seed=3).per_client,
                                  stats.per_client)


def test_feature_summary_equals_the_pooled_data_and_dp_hides_extremes():
    rng = np.random.default_rng(1)
    clients = [rng.normal(i % 3, 1.0, size=(rng.integers(5, 50), 4)) for i in range(80)]
    pooled = np.concatenate(clients)
    exact = feature_summary(clients)
    np.testing.assert_allclose(exact.mean, pooled.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(exact.variance, pooled.var(axis=0, ddof=1), rtol=1e-9)
    np.testing.assert_array_equal(exact.minimum, pooled.min(axis=0))
    private = feature_summary(clients, bounds=(-5.0, 5.0), epsilon=3.0, seed=2)
    assert private.minimum is None and private.maximum is None
    count_scale, sum_scale, _ = private.noise_scales
    assert count_scale == pytest.approx(1.0)  # epsilon / 3 per sum, sensitivity 1
    assert sum_scale == pytest.approx(4 * 5.0)
    # The mean's error: noise on the sum over a count of about len(pooled).
    bound = laplace_tail(sum_scale, 1e-3) / (len(pooled) - laplace_tail(1.0, 1e-3))
    assert np.all(np.abs(private.mean - pooled.mean(axis=0)) <= bound + 1e-3)
    with pytest.raises(ValueError, match="need bounds"):
        feature_summary(clients, epsilon=1.0)

"""KLL quantiles and HLL distinct counts merged across sites, within their error bounds."""

import datasketches as ds
import numpy as np

from fedsys.analytics.aggregates import AggSpec, merge_partials, sketch_of


def test_merged_kll_quantiles_are_within_the_documented_rank_error():
    rng = np.random.default_rng(3)
    sites = [rng.lognormal(i * 0.3, 1.0, 50_000) for i in range(4)]  # non-IID sites
    union = np.sort(np.concatenate(sites))
    for q in (0.01, 0.25, 0.5, 0.9, 0.99):
        spec = AggSpec("quantile", "x", "APPROX_QUANTILE", "x", q)
        estimate = merge_partials(spec, [[sketch_of(spec, list(s))] for s in sites])
        rank = np.searchsorted(union, estimate) / len(union)
        error = ds.kll_doubles_sketch(200).normalized_rank_error(False)  # 99% confidence
        assert abs(rank - q) <= error, (q, rank)


def test_merged_hll_distinct_counts_are_within_three_standard_errors():
    rng = np.random.default_rng(4)
    # Overlapping sites: 60k distinct ids overall, each seen at several sites.
    sites = [rng.choice(60_000, size=40_000, replace=False) for _ in range(4)]
    truth = len(np.unique(np.concatenate(sites)))
    spec = AggSpec("distinct", "id", "APPROX_COUNT_DISTINCT", "id")
    estimate = merge_partials(spec, [[sketch_of(spec, [int(v) for v in s])] for s in sites])
    relative_se = 1.04 / np.sqrt(2**12)
    assert abs(estimate - truth) <= 3 * relative_se * truth


def test_empty_sites_merge_to_null_quantiles_and_zero_distinct_counts():
    spec = AggSpec("quantile", "x", "APPROX_QUANTILE", "x", 0.5)
    assert merge_partials(spec, [[sketch_of(spec, [])], [None]]) is None
    distinct = AggSpec("distinct", "x", "APPROX_COUNT_DISTINCT", "x")
    assert merge_partials(distinct, [[sketch_of(distinct, [])], [None]]) == 0

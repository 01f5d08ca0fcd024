"""Pairwise masking: masks cancel in the sum, a masked vector looks uniform, dropouts."""

import numpy as np
from scipy.stats import chisquare

from fedsys.analytics import masking

SITES = ("s0", "s1", "s2", "s3")


def _parties():
    return {s: masking.KeyPair.generate() for s in SITES}


def _masked(parties, values, context, who=SITES):
    publics = {s: p.public for s, p in parties.items()}
    return {s: masking.mask_vector(masking.encode_fixed(values[s]), s, parties[s].private,
                                   publics, context) for s in who}


def test_key_agreement_gives_both_sides_the_same_seed_and_contexts_differ():
    a, b = masking.KeyPair.generate(), masking.KeyPair.generate()
    assert masking.pair_seed(a.private, b.public, b"q1") == masking.pair_seed(
        b.private, a.public, b"q1")
    assert masking.pair_seed(a.private, b.public, b"q1") != masking.pair_seed(
        a.private, b.public, b"q2")
    assert masking.KeyPair.from_private(a.private) == a


def test_masked_vectors_sum_to_the_exact_total():
    parties = _parties()
    values = {s: np.arange(6, dtype=float) * (i + 1) - 2.5 for i, s in enumerate(SITES)}
    masked = _masked(parties, values, b"ctx")
    total = np.zeros(6, dtype=np.uint64)
    for vector in masked.values():
        total += vector
    np.testing.assert_array_equal(masking.decode_fixed(total),
                                  sum(values.values()))  # exact: fixed point, mod 2^64


def test_a_masked_vector_is_uniform_although_the_values_are_constant():
    parties = _parties()
    values = {s: np.full(4096, 7.0) for s in SITES}
    vector = _masked(parties, values, b"ctx", who=("s1",))["s1"]
    top_bytes = (vector >> np.uint64(56)).astype(np.int64)
    counts = np.bincount(top_bytes, minlength=256)
    assert chisquare(counts).pvalue > 1e-3
    bits = np.unpackbits(vector.view(np.uint8))
    assert abs(bits.mean() - 0.5) < 0.01
    assert len(np.unique(vector)) == len(vector)  # nothing of the constant input shows


def test_survivors_revealing_their_seeds_with_a_dropped_site_recover_the_total():
    parties = _parties()
    values = {s: np.array([1.0, 2.0, 3.0]) * (i + 1) for i, s in enumerate(SITES)}
    survivors = ("s0", "s1", "s3")  # s2 masked nothing in: it dropped out
    masked = _masked(parties, values, b"ctx", who=survivors)
    total = np.zeros(3, dtype=np.uint64)
    for vector in masked.values():
        total += vector
    assert not np.allclose(masking.decode_fixed(total), sum(values[s] for s in survivors))
    revealed = {(s, "s2"): masking.pair_seed(parties[s].private, parties["s2"].public, b"ctx")
                for s in survivors}
    recovered = masking.remove_dropped_masks(total, revealed)
    np.testing.assert_array_equal(masking.decode_fixed(recovered),
                                  sum(values[s] for s in survivors))


def test_fixed_point_refuses_values_it_cannot_hold():
    import pytest

    with pytest.raises(ValueError, match="too large"):
        masking.encode_fixed([1e20])
    with pytest.raises(ValueError, match="not finite"):
        masking.encode_fixed([float("nan")])

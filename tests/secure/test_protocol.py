"""SecAgg+ with real key agreement: exact sums, dropouts at every step, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from fedsys.secure import (
    STEPS,
    ProtocolViolationError,
    Quantizer,
    SecAggClient,
    SecAggServer,
    SecureAggregationError,
    UnmaskRequest,
    secure_sum,
)
from fedsys.secure.field import recover_secret, split_secret


def _inputs(n: int, length: int = 64, seed: int = 0) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {c: rng.integers(0, 2**24, length, dtype=np.uint32) for c in range(n)}


def _plain(inputs: dict[int, np.ndarray], ids, bits: int = 32) -> np.ndarray:
    return sum(inputs[c].astype(np.uint64) for c in ids) % 2**bits


@pytest.mark.parametrize(("degree", "bits"), [(None, 32), (4, 32), (6, 20)])
def test_unmasked_sum_equals_the_plain_sum_exactly(degree, bits) -> None:
    inputs = {c: v % 2**16 for c, v in _inputs(12).items()}

    result = secure_sum(inputs, degree=degree, bits=bits)

    assert result.contributors == tuple(range(12))
    np.testing.assert_array_equal(result.total, _plain(inputs, range(12), bits))


@pytest.mark.parametrize("step", STEPS)
def test_dropouts_up_to_the_threshold_at_each_step_keep_the_sum_exact(step) -> None:
    n, threshold = 10, 0.6  # all pairs: t = 6 of 10, so 4 may vanish
    inputs = _inputs(n)
    gone = {1: step, 4: step, 6: step, 9: step}

    result = secure_sum(inputs, threshold=threshold, dropouts=gone)

    counted = [c for c in range(n) if c not in gone or step == "unmask"]
    assert result.contributors == tuple(counted)
    np.testing.assert_array_equal(result.total, _plain(inputs, counted))


def test_sparse_graph_survives_dropouts_spread_over_steps() -> None:
    inputs = _inputs(16)
    gone = {2: "advertise", 7: "share", 11: "mask", 13: "unmask"}

    result = secure_sum(inputs, degree=8, threshold=0.5, dropouts=gone)

    counted = [c for c in range(16) if c not in (2, 7, 11)]
    np.testing.assert_array_equal(result.total, _plain(inputs, counted))


@pytest.mark.parametrize("step", ["share", "mask", "unmask"])
def test_past_the_threshold_the_round_fails(step) -> None:
    inputs = _inputs(8)
    gone = {c: step for c in range(4)}  # t = 5 of 8: four dropouts are one too many

    with pytest.raises(SecureAggregationError, match="failed"):
        secure_sum(inputs, threshold=0.6, dropouts=gone)


def _round_to_unmask(n: int, gone_before_mask: set[int]):
    server = SecAggServer(range(n), 32, threshold=0.5)
    clients = {c: SecAggClient(s) for c, s in server.setup().items()}
    for c in clients:
        server.receive_advert(clients[c].advertise())
    for c, adverts in server.close_adverts().items():
        server.receive_shares(c, clients[c].share_keys(adverts))
    for c, shares in server.close_shares().items():
        clients[c].receive_shares(shares)
        if c not in gone_before_mask:
            server.receive_masked(clients[c].mask(np.zeros(32, dtype=np.uint32)))
    return server, clients


def test_a_failed_round_asks_for_no_share() -> None:
    server, _ = _round_to_unmask(6, gone_before_mask={0, 1, 2, 3})

    with pytest.raises(SecureAggregationError, match="masked inputs arrived"):
        server.close_inputs()

    assert server.requests_ == {} and server.replies_ == {}


def test_a_server_asking_for_both_kinds_of_share_is_refused() -> None:
    _, clients = _round_to_unmask(5, gone_before_mask={4})
    honest = clients[0]

    with pytest.raises(ProtocolViolationError, match="both kinds of share"):
        honest.unmask(UnmaskRequest(survivors=(0, 1, 2, 4), dropped=(4,)))
    honest.unmask(UnmaskRequest(survivors=(0, 1, 2, 3), dropped=(4,)))
    with pytest.raises(ProtocolViolationError, match="already revealed"):
        honest.unmask(UnmaskRequest(survivors=(0, 4), dropped=()))


def test_the_server_never_requests_both_shares_of_a_client() -> None:
    server, _ = _round_to_unmask(7, gone_before_mask={2, 5})

    requests = server.close_inputs()

    assert sorted(requests) == [0, 1, 3, 4, 6]  # one request per survivor
    for request in requests.values():
        assert not set(request.survivors) & set(request.dropped)
        assert not {2, 5} & set(request.survivors)


def test_a_masked_vector_is_indistinguishable_from_uniform() -> None:
    length = 200_000
    server = SecAggServer(range(3), length)
    clients = {c: SecAggClient(s) for c, s in server.setup().items()}
    for c in clients:
        server.receive_advert(clients[c].advertise())
    for c, adverts in server.close_adverts().items():
        server.receive_shares(c, clients[c].share_keys(adverts))
    for c, shares in server.close_shares().items():
        clients[c].receive_shares(shares)

    masked = clients[0].mask(np.zeros(length, dtype=np.uint32)).values  # input: all zeros

    counts = np.bincount((masked >> 24).astype(np.int64), minlength=256)
    assert stats.chisquare(counts).pvalue > 1e-4
    assert stats.kstest(masked / 2.0**32, "uniform").pvalue > 1e-4
    low_bits = np.bincount((masked & 0xFF).astype(np.int64), minlength=256)
    assert stats.chisquare(low_bits).pvalue > 1e-4


def test_shamir_needs_the_threshold_and_no_fewer() -> None:
    secret = bytes(range(32))
    shares = split_secret(secret, [3, 5, 8, 13, 21], threshold=3)

    assert recover_secret({k: shares[k] for k in (5, 13, 21)}, 3) == secret
    assert recover_secret({k: shares[k] for k in (3, 8, 21)}, 3) == secret
    with pytest.raises(ValueError, match="3 needed"):
        recover_secret({k: shares[k] for k in (3, 8)}, 3)


def test_quantization_is_unbiased_and_sums_without_overflow() -> None:
    quantizer = Quantizer(clip_range=1.0, bits=32, max_summands=50)
    values = np.full(20_000, 0.123456789)
    rng = np.random.default_rng(1)

    total = sum(quantizer.quantize(values, rng).astype(np.uint64) for _ in range(50))
    recovered = quantizer.dequantize_sum(total % 2**32, 50) / 50

    assert total.max() < 2**32
    np.testing.assert_allclose(recovered.mean(), 0.123456789, atol=1e-9)
    np.testing.assert_allclose(recovered, 0.123456789, atol=quantizer.step)
    clipped = quantizer.dequantize_sum(quantizer.quantize(np.array([5.0, -5.0])), 1)
    np.testing.assert_allclose(clipped, [1.0, -1.0])


def test_bad_settings_fail_with_one_clear_error() -> None:
    with pytest.raises(ValueError, match="bits must be between 8 and 48"):
        Quantizer(bits=64)
    with pytest.raises(SecureAggregationError, match="at least 2 distinct clients"):
        SecAggServer([7], 10).setup()

"""Secure sums on plain values: a job runner standing in for the sites, no coordinator."""

import asyncio

import numpy as np
import pytest

from fedsys.analytics import masking
from fedsys.analytics.planner import plan_query
from fedsys.analytics.secure_sum import fetch_public_keys, secure_sums
from fedsys.silo.coordinator import JobResult
from fedsys.silo.mode import JobFailedError
from fedsys.silo.task_registry import Output

SITES = ["s0", "s1", "s2"]
VALUES = {"s0": [1.5, 2.0], "s1": [-0.5, 4.0], "s2": [10.0, 20.0]}


class FakeSites:
    """Runs each site task as the site would, from its key pair and its values."""

    def __init__(self, lost=()):
        self.pairs = {s: masking.KeyPair.generate() for s in SITES}
        self.lost = set(lost)
        self.jobs = []

    def _run(self, spec):
        pair, params = self.pairs[spec.site], spec.params
        if spec.task == "analytics.public_key":
            return Output(pair.public, {})
        if spec.task == "analytics.masked_partial":
            if spec.site in self.lost:
                return Output(b"", {"skipped": "lost"})
            peers = {s: bytes.fromhex(k) for s, k in params["peers"].items()}
            masked = masking.mask_vector(masking.encode_fixed(VALUES[spec.site]), spec.site,
                                         pair.private, peers, bytes.fromhex(params["context"]))
            return Output(masked.astype("<u8").tobytes(), {})
        context = bytes.fromhex(params["context"])
        return Output(b"".join(masking.pair_seed(pair.private, bytes.fromhex(k), context)
                               for _, k in sorted(params["dropped"].items())), {})

    async def run_job(self, job):
        self.jobs.append(job.name)
        outputs = {spec.task_id: self._run(spec) for spec in job.tasks}
        return JobResult(job.name, outputs, 0.5, {}, [])


def _sum(sites, max_dropouts=1):
    async def main():
        keys = await fetch_public_keys(sites.run_job, "data", SITES)
        return await secure_sums(sites.run_job, "data", plan_query("SELECT COUNT(*) FROM data"),
                                 {}, [], SITES, keys, max_dropouts)

    return asyncio.run(main())


def test_the_survivors_total_comes_back_with_its_cost_and_the_dropped_sites():
    sites = FakeSites(lost=["s2"])
    summed = _sum(sites)
    np.testing.assert_allclose(summed.total, [1.0, 6.0])
    assert summed.dropped == ["s2"]
    assert sites.jobs == ["keys", "query-secure", "query-recover"]
    assert summed.duration_s == pytest.approx(1.0)  # the sum and the recovery, not the keys
    assert summed.bytes_moved == 2 * 2 * 8 + 2 * 32  # two masked vectors, two seeds


def test_more_dropouts_than_allowed_fail_the_sum():
    with pytest.raises(JobFailedError, match=r"lost 1 sites \['s2'\]"):
        _sum(FakeSites(lost=["s2"]), max_dropouts=0)

"""The engine with real processes: a coordinator, site managers with worker pools, a WAN shaper.

Sites are real processes dialling a real gRPC server (TLS and tokens) through the
shaping proxy; tasks run in worker processes on each site's own ``.npz`` data.
"""

from __future__ import annotations

import statistics

import grpc
import numpy as np
import pytest
import torch

from fedsys.aggregation import FedAvg
from fedsys.core.training import LocalTrainer, TrainConfig
from fedsys.core.update import ClientUpdate
from fedsys.core.weights import ModelWeights
from fedsys.silo.histogram_job import histogram_counts, sum_count_outputs
from fedsys.silo.job import JobBuilder
from fedsys.silo.mode import EngineMode
from fedsys.silo.shaper import LinkSettings
from fedsys.silo.task_registry import Output
from fedsys.silo.training_job import fedavg_job, model_from_spec
from fedsys.wire import auth
from fedsys.wire.protos import silo_pb2, silo_pb2_grpc
from fedsys.wire.tensors import layout_of, weights_from_bytes
from fedsys.wire.transport import ChannelSecurity, open_channel
from tests.silo.conftest import RTT_S

MODES = {"baseline": EngineMode.baseline(), "sol": EngineMode.sol()}


def _three_stage_job(datasets, parts):
    """Partition histograms -> a merge at each data site -> a merge at the coordinator."""
    job = JobBuilder("three-stage")
    site_totals = []
    for i, dataset in enumerate(datasets):
        ids = [
            job.site_task(f"part/{dataset}/{p}", "silo.histogram",
                          {"part": p, "parts": parts, "bins": 16, "lo": -4.0, "hi": 4.0},
                          dataset=dataset)
            for p in range(parts)
        ]
        site_totals.append(job.site_task(f"site-total/{dataset}", "silo.sum_counts", {}, ids,
                                         site=f"site-{i}"))
    job.merge("total", sum_count_outputs, site_totals)
    return job.build(results=["total"])


def test_multi_stage_job_gives_identical_results_in_both_modes(cluster):
    c, runner = cluster
    results = {name: runner.run(c.coordinator.run_job(_three_stage_job(c.datasets, 6), mode))
               for name, mode in MODES.items()}
    base, sol = results["baseline"].outputs["total"], results["sol"].outputs["total"]
    assert base.payload == sol.payload and base.meta == sol.meta
    values = np.concatenate([np.load(c.workdir / "data" / f"{d}.npz")["values"]
                             for d in c.datasets])
    np.testing.assert_array_equal(np.frombuffer(sol.payload, "<i8"),
                                  histogram_counts(values, 16, -4.0, 4.0))
    assert sol.meta["rows"] == len(values)
    for result in results.values():  # every task counted exactly once
        ids = [r.task_id for r in result.records]
        assert len(ids) == len(set(ids)) == 2 * 6 + 2
        assert result.stats["duplicates"] == 0


def _spin_job(datasets, per_dataset, ms, out_bytes=8):
    job = JobBuilder("spin")
    ids = [job.site_task(f"spin/{d}/{i}", "silo.spin",
                         {"ms": ms, "value": 1, "out_bytes": out_bytes}, dataset=d)
           for d in datasets for i in range(per_dataset)]
    job.merge("total", lambda outs: Output(b"", {"value": sum(o.meta["value"] for o in outs)}),
              ids)
    return job.build(results=["total"])


def _waits(records, workers):
    """How long each task waited after a worker freed up, per site.

    With ``workers`` slots kept busy, task ``i`` (in start order, ``i >= workers``) takes
    the slot freed by the ``(i - workers)``-th completion; in late binding it is also the
    task that completion asked for. Its wait is its start minus that completion.
    """
    waits = []
    for site in {r.site for r in records}:
        starts = sorted(r.start_s for r in records if r.site == site)
        ends = sorted(r.end_s for r in records if r.site == site)
        waits += [starts[i] - ends[i - workers] for i in range(workers, len(starts))]
    return waits


def test_early_binding_runs_tasks_without_a_round_trip_each(cluster):
    c, runner = cluster
    tasks = 2 * 16
    sol = runner.run(c.coordinator.run_job(_spin_job(c.datasets, 16, 20), MODES["sol"]))
    base = runner.run(c.coordinator.run_job(_spin_job(c.datasets, 16, 20), MODES["baseline"]))
    assert sol.outputs["total"].meta["value"] == base.outputs["total"].meta["value"] == tasks
    # Sol never asks for work; a baseline site asks once per task (plus once per site at
    # the start, for both its workers).
    assert sol.stats["requests"] == 0
    assert base.stats["requests"] >= tasks
    assert base.stats["assign_messages"] >= tasks - 2
    # Round trips on the critical path: a task that waited more than half an RTT after a
    # worker freed up. A Sol site finds its next task already queued; a baseline site
    # waits request -> assignment, a full RTT, before every task.
    sol_waits, base_waits = _waits(sol.records, c.workers), _waits(base.records, c.workers)
    assert len(sol_waits) == len(base_waits) == tasks - 2 * c.workers
    assert sum(wait > RTT_S / 2 for wait in sol_waits) <= len(sol_waits) // 4
    assert statistics.median(sol_waits) < RTT_S / 3
    assert min(base_waits) > 0.9 * RTT_S
    assert sol.duration_s < base.duration_s


def _max_busy(records, site):
    """Most compute intervals and output sends in progress at once at ``site``."""
    events = []
    for r in records:
        if r.site == site:
            assert r.send_start_s is not None
            events += [(r.start_s, 1), (r.end_s, -1), (r.send_start_s, 1), (r.received_s, -1)]
    busy = peak = 0
    for _, step in sorted(events):
        busy += step
        peak = max(peak, busy)
    return peak


@pytest.mark.timing
def test_decoupled_sends_overlap_compute(cluster):
    c, runner = cluster
    c.set_link(LinkSettings.symmetric(RTT_S, rate_bps=20e6))
    try:
        # 320 kB outputs: 128 ms each at 20 Mbit/s, longer than the 60 ms of compute.
        job = lambda: _spin_job(c.datasets, 6, 60, out_bytes=320_000)  # noqa: E731
        sol = runner.run(c.coordinator.run_job(job(), MODES["sol"]))
        base = runner.run(c.coordinator.run_job(job(), MODES["baseline"]))
    finally:
        c.set_link(LinkSettings.symmetric(RTT_S))
    assert len(sol.records) == len(base.records) == 6 * len(c.datasets)
    assert all(r.payload_bytes == 320_000 for r in sol.records + base.records)
    # Coupled: a worker is held until its output is acknowledged, so a site never has
    # more computations and sends in progress than workers (2).
    assert all(_max_busy(base.records, site) <= c.workers for site in c.names)
    # Decoupled: communication workers send while both compute workers go on.
    assert max(_max_busy(sol.records, site) for site in c.names) >= c.workers + 1
    assert sol.duration_s < base.duration_s


def test_a_late_binding_job_right_after_a_coupled_upload_gets_its_workers(cluster):
    c, runner = cluster
    # Each job ends on coupled uploads (outputs above the threshold): a site's worker is
    # held until the acknowledgement, which may come after the next job's mode message.
    # The worker freed then must still ask the new job for work, or the job never ends.
    for _ in range(3):
        big = runner.run(c.coordinator.run_job(
            _spin_job(c.datasets, 2, 5, out_bytes=100_000), MODES["baseline"], timeout_s=60))
        small = runner.run(c.coordinator.run_job(
            _spin_job(c.datasets, 4, 5), MODES["baseline"], timeout_s=60))
        assert big.outputs["total"].meta["value"] == 2 * len(c.datasets)
        assert small.outputs["total"].meta["value"] == 4 * len(c.datasets)


def _reference_fedavg(c, spec, train, rounds):
    """The same FedAvg computed in this process, site by site."""
    model = model_from_spec(spec)
    weights = ModelWeights.from_module(model)
    strategy = FedAvg()
    for round_idx in range(rounds):
        updates = []
        for i, dataset in enumerate(c.datasets):
            data = np.load(c.workdir / "data" / f"{dataset}.npz")
            result = LocalTrainer(TrainConfig(**train)).train(
                model, weights, torch.from_numpy(data["x"]), torch.from_numpy(data["y"]),
                seed=[0, round_idx])
            updates.append(ClientUpdate(i, result.delta, result.num_samples))
        weights, _ = strategy.aggregate(weights, updates, None)
    return weights


def test_cross_silo_fedavg_is_the_same_in_both_modes_and_matches_fedavg(cluster):
    c, runner = cluster
    spec = {"kind": "mlp", "input_shape": [16], "num_classes": 10, "hidden": [32]}
    train = {"local_steps": 3, "batch_size": 16}
    finals = {}
    for name, mode in MODES.items():
        job = fedavg_job(c.datasets, 3, spec, train, FedAvg())
        result = runner.run(c.coordinator.run_job(job, mode))
        finals[name] = result.outputs["round/2/global"].payload
    assert finals["baseline"] == finals["sol"]
    layout = layout_of(ModelWeights.from_module(model_from_spec(spec)))
    got = weights_from_bytes(finals["sol"], layout)
    expected = _reference_fedavg(c, spec, train, 3)
    np.testing.assert_allclose(got.flat.numpy(), expected.flat.numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(got.flat.numpy(), ModelWeights.from_module(model_from_spec(spec)).flat)


def test_fedavg_streams_each_round_merge_to_the_next_rounds_sites_with_the_same_result(cluster):
    c, runner = cluster
    # About 90 kB of weights: deltas go up on PutOutput (above the 64 kB threshold), so
    # in Sol mode every round's merge runs block by block as they stream in and the new
    # global model flows down, sealed, while the last uploads still run.
    spec = {"kind": "mlp", "input_shape": [16], "num_classes": 10, "hidden": [256, 64]}
    train = {"local_steps": 2, "batch_size": 16}
    c.set_link(LinkSettings.symmetric(RTT_S, rate_bps=20e6))
    try:
        results = {name: runner.run(c.coordinator.run_job(
            fedavg_job(c.datasets, 3, spec, train, FedAvg()), mode))
            for name, mode in MODES.items()}
    finally:
        c.set_link(LinkSettings.symmetric(RTT_S))
    sol, base = results["sol"], results["baseline"]
    assert len(sol.records) == 3 * len(c.datasets)  # one training task per site and round
    assert all(r.payload_bytes > 64 * 1024 for r in sol.records)
    assert sol.stats["streamed_merges"] == 3 and sol.stats["abandoned_streams"] == 0
    assert base.stats["streamed_merges"] == 0
    assert sol.outputs["round/2/global"] == base.outputs["round/2/global"]
    layout = layout_of(ModelWeights.from_module(model_from_spec(spec)))
    got = weights_from_bytes(sol.outputs["round/2/global"].payload, layout)
    np.testing.assert_allclose(got.flat.numpy(), _reference_fedavg(c, spec, train, 3).flat,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.timing
def test_streamed_merge_overlaps_the_next_rounds_download_with_this_rounds_uploads(cluster):
    c, runner = cluster
    # 340 kB of weights: 135 ms per transfer at 20 Mbit/s. Baseline: a round's tasks
    # start after the last delta is in, plus the request and fetch round trips and the
    # whole download. Sol: the new model went down while the deltas came up, so the
    # next round starts half an RTT and one upload chunk after the last delta is in.
    spec = {"kind": "mlp", "input_shape": [16], "num_classes": 10, "hidden": [1024, 64]}
    transfer_s = 4 * sum(p.numel() for p in model_from_spec(spec).parameters()) * 8 / 20e6
    c.set_link(LinkSettings.symmetric(RTT_S, rate_bps=20e6))
    try:
        results = {name: runner.run(c.coordinator.run_job(
            fedavg_job(c.datasets, 4, spec, {"local_steps": 1, "batch_size": 16}, FedAvg()),
            mode)) for name, mode in MODES.items()}
    finally:
        c.set_link(LinkSettings.symmetric(RTT_S))

    def gaps(result):
        """Per round: first start of a round's tasks minus the last delta of the previous."""
        rounds = {}
        for r in result.records:
            rounds.setdefault(int(r.task_id.split("/")[1]), []).append(r)
        return [min(r.start_s for r in rounds[i]) - max(r.received_s for r in rounds[i - 1])
                for i in range(1, len(rounds))]

    assert transfer_s > 0.12
    assert results["sol"].outputs == results["baseline"].outputs
    # A whole download after the last delta takes at least transfer_s + RTT / 2.
    assert statistics.median(gaps(results["sol"])) < transfer_s
    assert min(gaps(results["baseline"])) > transfer_s + RTT_S / 2


def test_a_forged_token_is_refused(cluster):
    c, runner = cluster

    async def connect():
        security = ChannelSecurity(ca_path=c.workdir / "pki" / "ca.pem")
        async with open_channel(f"127.0.0.1:{c.coordinator.port}", security) as channel:
            stub = silo_pb2_grpc.CoordinatorStub(channel)
            return await stub.PutOutput(
                iter([silo_pb2.OutputPart(header=silo_pb2.OutputHeader(task_id="x"))]),
                metadata=auth.bearer_metadata("forged"), timeout=10)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        runner.run(connect())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED

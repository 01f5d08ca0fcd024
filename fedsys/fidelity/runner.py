"""One job, twice: on the simulator's virtual clock and as a real loopback deployment.

Both sides get the same config, the same device fleet (written once to a trace file
both read), the same data shards and seeds. The simulator runs in this process; the
deployment is ``fedsys deploy local --traces``: a real aggregator and emulated device
processes (:mod:`fedsys.deploy.emulation`) whose trace clock starts with round 0.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fedsys.config.schema import RunConfig
from fedsys.fidelity.compare import FidelityReport, calibrate, calibrate_task, compare
from fedsys.metrics.records import RoundRecord
from fedsys.metrics.writers import atomic_write_text


@dataclass(frozen=True)
class FidelityRun:
    """Both sides' records, the devices' expected times and the comparison."""

    config: RunConfig
    sim: tuple[RoundRecord, ...]
    real: tuple[RoundRecord, ...]
    timings: tuple[dict[str, Any], ...]
    expected_s: np.ndarray
    report: FidelityReport
    calibration: dict[str, float] | None = None
    """The measured ``clock`` terms (``server_round_s``, ``server_update_s``, ``client_task_s``)."""
    uncalibrated: FidelityReport | None = None


def prepare(config: RunConfig, output_dir: Path) -> RunConfig:
    """The config both sides run: its fleet written to ``fleet.csv``, a real-side fit.

    The fleet is written unshaped (no time scale, availability kept) and read back by
    both sides, so they shape identical numbers. A deployment round starts with
    whoever is connected, as a simulated one with whoever is online: unless the
    config says otherwise, ``deploy.min_clients`` is 1.
    """
    from fedsys.parts.builders import build_dataset, build_fleet
    from fedsys.traces import save_fleet

    output_dir.mkdir(parents=True, exist_ok=True)
    dataset = build_dataset(config.dataset, config.seed)
    raw = config.devices.model_copy(update={"always_available": False, "time_scale": 1.0})
    fleet = build_fleet(raw, dataset.num_clients, config.seed)
    traces = save_fleet(fleet, output_dir / "fleet.csv")
    data = config.model_dump(mode="json")
    data["output_dir"] = str(output_dir)
    data["devices"].update(source="file", path=str(traces.resolve()), capacity_path=None)
    if data["deploy"]["min_clients"] is None:
        data["deploy"]["min_clients"] = 1
    return RunConfig.model_validate(data)


def simulate(config: RunConfig) -> tuple[tuple[RoundRecord, ...], np.ndarray]:
    """Run the simulator; its records and every client's round time as it charged it.

    That is the profile's download + compute + upload, plus ``clock.client_task_s``.
    """
    from fedsys.core.weights import ModelWeights
    from fedsys.parts.rules import wire_bytes
    from fedsys.sim.assemble import build_simulator
    from fedsys.traces import client_round_time

    simulator = build_simulator(config)
    result = simulator.run()
    weights = ModelWeights.from_module(simulator.model)
    trainer = simulator.trainer
    assert trainer is not None
    sizes = simulator.dataset.client_sizes
    down, compute, up = client_round_time(
        simulator.fleet,
        np.arange(len(sizes)),
        trainer.config.samples_processed(sizes),
        weights.num_bytes,
        wire_bytes(simulator.compressor, weights),
        simulator.model_cost_ratio,
    )
    return result.records, down + compute + up + config.clock.client_task_s


def deploy(
    config: RunConfig,
    output_dir: Path,
    devices_per_process: int = 10,
    warmup_s: float = 10.0,
    on_round: Callable[[RoundRecord], None] = lambda record: None,
    note: Callable[[str], None] = lambda text: None,
) -> tuple[tuple[RoundRecord, ...], tuple[dict[str, Any], ...]]:
    """Run ``config`` as a real deployment of emulated devices; records and task timings.

    Raises
    ------
    RuntimeError
        If the deployment does not complete.
    """
    from fedsys.deploy.local_deployment import LocalOptions, run_local
    from fedsys.metrics.run_folder import read_rounds

    output_dir.mkdir(parents=True, exist_ok=True)
    launch = output_dir / "fidelity.yaml"
    atomic_write_text(launch, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    timings_file = output_dir / "timings.jsonl"
    timings_file.unlink(missing_ok=True)
    options = LocalOptions(
        clients=config.dataset.num_clients,
        output_dir=output_dir,
        traces=Path(str(config.devices.path)),
        devices_per_process=devices_per_process,
        warmup_s=warmup_s,
    )
    outcome = run_local(config, options, note=note, on_round=on_round)
    if outcome.exit_code != 0:
        raise RuntimeError(
            f"the real deployment ended with status {outcome.exit_code} ({outcome.error}); "
            f"see {output_dir / 'logs'}"
        )
    records = tuple(read_rounds(output_dir))
    timings = (
        tuple(json.loads(line) for line in timings_file.read_text().splitlines() if line.strip())
        if timings_file.is_file()
        else ()
    )
    return records, timings


def run_fidelity(
    config: RunConfig,
    output_dir: Path,
    *,
    calibrate_clock: bool = False,
    devices_per_process: int = 10,
    warmup_s: float = 10.0,
    on_round: Callable[[RoundRecord], None] = lambda record: None,
    note: Callable[[str], None] = lambda text: None,
) -> FidelityRun:
    """Simulate, deploy, compare; with ``calibrate_clock`` also fit the ``clock`` terms.

    Calibration measures the server's own time per round on the deployment, writes
    ``calibrated.yaml`` (the config with ``clock`` set) and simulates again with it;
    the returned report is then the calibrated one.
    """
    config = prepare(config, output_dir)
    sim, expected = simulate(config)
    real, timings = deploy(
        config, output_dir / "deploy", devices_per_process, warmup_s, on_round, note
    )
    target = config.target_accuracy
    report = compare(sim, real, expected, timings, target)
    if not calibrate_clock:
        return FidelityRun(config, sim, real, timings, expected, report)
    round_s, update_s = calibrate(real)
    profile_s = expected - config.clock.client_task_s
    clock = {
        "server_round_s": round_s,
        "server_update_s": update_s,
        "client_task_s": calibrate_task(real, profile_s),
    }
    data = config.model_dump(mode="json")
    data["clock"] = clock
    calibrated = RunConfig.model_validate(data)
    atomic_write_text(
        output_dir / "calibrated.yaml",
        yaml.safe_dump(calibrated.model_dump(mode="json"), sort_keys=False),
    )
    sim_calibrated, charged = simulate(calibrated)
    return FidelityRun(
        calibrated,
        sim_calibrated,
        real,
        timings,
        charged,
        compare(sim_calibrated, real, charged, timings, target),
        clock,
        report,
    )

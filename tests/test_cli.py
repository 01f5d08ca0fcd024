"""The ``fedsys`` command line, run in a real subprocess."""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from rich.console import Console

from fedsys.cli import main
from fedsys.config.loader import ConfigError
from fedsys.traces import generate_fleet, save_fleet


def _fedsys(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedsys.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_run_with_overrides_writes_rounds_summary_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _fedsys(
        "run", "--quiet", "--output-dir", str(out), "--set", "rounds=4", "--set", "eval.every=2"
    )

    assert proc.returncode == 0, proc.stderr
    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [r["round_idx"] for r in rounds] == [0, 1, 2, 3]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 4
    assert "time_to_target_s" in summary
    assert (out / "accuracy_vs_time.png").stat().st_size > 0
    assert "time to 85% accuracy" in proc.stdout


def test_config_file_with_wrong_key_fails_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("rounds: 3\ndataset:\n  nam: digits\n")

    proc = _fedsys("run", str(config), "--quiet")

    assert proc.returncode == 2
    assert "dataset.nam" in proc.stderr


def test_traces_show_and_convert_round_trip(tmp_path: Path) -> None:
    csv = save_fleet(generate_fleet(50, seed=1), tmp_path / "fleet.csv")
    pickles = tmp_path / "fedscale"

    shown = _fedsys("traces", "show", str(csv), "--plot", str(tmp_path / "h.png"))
    converted = _fedsys("traces", "convert", str(csv), str(pickles))

    assert shown.returncode == 0, shown.stderr
    assert "50" in shown.stdout
    assert (tmp_path / "h.png").exists()
    assert converted.returncode == 0, converted.stderr
    back = _fedsys("traces", "show", str(pickles), "--plot", str(tmp_path / "h2.png"))
    assert back.returncode == 0, back.stderr


SMALL = ["--set", "dataset.num_clients=20", "--set", "clients_per_round=5"]


def _rows(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        row.pop("wall_s")
    return rows


def test_sigint_leaves_a_consistent_folder_and_resume_matches_an_uninterrupted_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a run that checkpoints every 2 rounds, interrupted once 2 rounds are out.
    out, whole = tmp_path / "run", tmp_path / "whole"
    args = ["run", "--quiet", *SMALL, "--set", "rounds=30", "--set", "eval.every=3"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedsys.cli", *args, "--set", "checkpoint_every=2",
         "--output-dir", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            rounds = out / "rounds.jsonl"
            if rounds.exists() and len(rounds.read_text().splitlines()) >= 2:
                break
            time.sleep(0.01)
        # Act
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    # Assert: the folder is one run's, marked interrupted, parseable, resumable.
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert (out / "config.yaml").read_text().startswith("# resolved config written by fedsys")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    stopped = _rows(out / "rounds.jsonl")
    assert 2 <= len(stopped) < 30
    assert summary["rounds"] == len(stopped)

    resumed = main(["run", "--quiet", "--resume", str(out)])
    reference = main([*args, "--output-dir", str(whole)])

    assert (resumed, reference) == (0, 0), capsys.readouterr().err
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"
    assert _rows(out / "rounds.jsonl") == _rows(whole / "rounds.jsonl")


def test_a_non_empty_output_folder_is_refused_unless_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "rounds.jsonl").write_text('{"round_idx": 0}\n')
    (out / "notes.txt").write_text("mine")
    args = ["run", "--quiet", *SMALL, "--set", "rounds=2", "--output-dir", str(out)]

    refused = main(args)
    refused_err = capsys.readouterr().err
    replaced = main([*args, "--overwrite"])

    assert refused == 1
    assert "is not empty" in refused_err and "Traceback" not in refused_err
    assert len(refused_err.strip().splitlines()) == 1
    assert replaced == 0, capsys.readouterr().err
    assert [r["round_idx"] for r in _rows(out / "rounds.jsonl")] == [0, 1]
    assert (out / "notes.txt").read_text() == "mine"


def test_results_files_have_the_users_default_mode(tmp_path: Path) -> None:
    out = tmp_path / "run"

    assert main(["run", "--quiet", *SMALL, "--set", "rounds=1", "--output-dir", str(out)]) == 0
    umask = os.umask(0)
    os.umask(umask)
    for name in ("config.yaml", "rounds.jsonl", "summary.json", "checkpoint.pt"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def _leaf(root: Path, users: int) -> Path:
    data = {f"u{i}": {"x": [[float(i), 1.0]] * 3, "y": [i % 2] * 3} for i in range(users)}
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
        content = {"users": list(data), "user_data": data, "num_samples": [3] * users}
        (root / split / f"d_{split}.json").write_text(json.dumps(content))
    return root


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], int, str]]:
    """Case name -> (arguments, exit status, what the one-line error must say)."""
    (tmp / "dup.yaml").write_text("rounds: 3\nseed: 1\nrounds: 4\n")
    (tmp / "alias.yaml").write_text("a: &x [1, 2]\nb: *x\n")
    (tmp / "binary.yaml").write_bytes(b"\xff\xfe\x00rounds")
    (tmp / "hidden.yaml").write_text("model: {hidden: [64, 0]}\n")
    (tmp / "short.yaml").write_text(
        "clients_per_round: 4\nround: {mode: deadline, deadline_s: 60, min_participants: 5}\n"
    )
    (tmp / "unused.yaml").write_text(f"dataset: {{name: leaf, path: {tmp}, num_clients: 12}}\n")
    leaf = _leaf(tmp / "leaf", users=3)
    (tmp / "few.yaml").write_text(
        f"clients_per_round: 5\ndataset: {{name: leaf, path: {leaf}}}\nmodel: {{name: logreg}}\n"
    )
    traces = tmp / "traces"
    traces.mkdir()
    (traces / "client_device_capacity").write_bytes(pickle.dumps({1: {"computation": 1.0}})[:9])
    (tmp / "refused.pkl").write_bytes(pickle.dumps(date(2020, 1, 1)))
    (tmp / "resume_me").mkdir()
    return {
        "missing config": (["run", str(tmp / "none.yaml")], 2, "none.yaml not found"),
        "config is a folder": (["run", str(tmp)], 2, "is a folder"),
        "binary config": (["run", str(tmp / "binary.yaml")], 2, "binary.yaml is not UTF-8"),
        "duplicate key": (["run", str(tmp / "dup.yaml")], 2, "duplicate key 'rounds'"),
        "alias": (["run", str(tmp / "alias.yaml")], 2, "anchors and aliases"),
        "bad override": (["run", "--set", "rounds=[1"], 2, "override 'rounds=[1'"),
        "hidden of 0": (["run", str(tmp / "hidden.yaml")], 2, "model.hidden entries"),
        "min participants": (["run", str(tmp / "short.yaml")], 2, "round.min_participants (5)"),
        "key not for dataset": (["run", str(tmp / "unused.yaml")], 2, "dataset.num_clients does"),
        "more per round than data": (["run", str(tmp / "few.yaml")], 2, "exceeds the 3 clients"),
        "truncated pickle": (
            ["traces", "show", str(traces)],
            1,
            "client_device_capacity: not a readable pickle",
        ),
        "refused pickle": (["traces", "show", str(tmp / "refused.pkl")], 1, "refused.pkl"),
        "resume a non-run": (["run", "--resume", str(tmp / "resume_me")], 2, "not a fedsys run"),
        "resume with a config": (
            ["run", str(tmp / "dup.yaml"), "--resume", str(tmp / "resume_me")],
            2,
            "give no CONFIG",
        ),
    }


CASES = [
    "missing config",
    "config is a folder",
    "binary config",
    "duplicate key",
    "alias",
    "bad override",
    "hidden of 0",
    "min participants",
    "key not for dataset",
    "more per round than data",
    "truncated pickle",
    "refused pickle",
    "resume a non-run",
    "resume with a config",
]


@pytest.mark.parametrize("case", CASES)
def test_each_user_mistake_ends_in_one_line_and_its_exit_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    args, status, message = _bad_inputs(tmp_path)[case]

    code = main([*args, "--quiet"] if args[0] == "run" else args)

    err = capsys.readouterr().err
    assert code == status, err
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        main(["--debug", "run", str(tmp_path / "none.yaml")])
    with pytest.raises(ConfigError, match="not found"):
        main(["run", str(tmp_path / "none.yaml"), "--debug"])


def test_exhausted_privacy_budget_ends_cleanly_with_the_rounds_so_far(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = [
        "run", "--quiet", *SMALL, "--output-dir", str(out), "--set", "rounds=20",
        "--set", "strategy.name=dp_fedavg", "--set", "strategy.noise_multiplier=1.5",
        "--set", "strategy.epsilon_budget=3",
    ]  # fmt: skip

    code = main(args)

    err = capsys.readouterr().err
    assert code == 1
    assert "privacy budget exceeded" in err and len(err.strip().splitlines()) == 1
    summary = json.loads((out / "summary.json").read_text())
    rows = _rows(out / "rounds.jsonl")
    assert summary["status"] == "failed"
    assert "privacy budget exceeded" in summary["reason"]
    assert 0 < len(rows) == summary["rounds"] < 20
    assert summary["privacy"]["epsilon"] <= 3 < summary["privacy"]["epsilon"] * 2


def test_metrics_options_write_csv_and_tensorboard_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    args = ["run", "--quiet", *SMALL, "--set", "rounds=3", "--set", "eval.every=1"]

    code = main([*args, "--set", "metrics.tensorboard=true", "--output-dir", str(out)])

    assert code == 0, capsys.readouterr().err
    csv_rows = (out / "rounds.csv").read_text().splitlines()
    assert csv_rows[0].startswith("round_idx,") and len(csv_rows) == 4
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("round/accuracy")] == [0, 1, 2]


NARROW = {**os.environ, "COLUMNS": "40", "OMP_NUM_THREADS": "1"}
TINY = ["--quiet", "--set", "rounds=2", "--set", "eval.every=1", "--set", "dataset.num_clients=20"]


def test_config_piped_into_run_at_40_columns(tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = subprocess.Popen(
        [sys.executable, "-m", "fedsys.cli", "config"], stdout=subprocess.PIPE, env=NARROW
    )
    run = subprocess.run(
        [sys.executable, "-m", "fedsys.cli", "run", "-", *TINY, "--output-dir", str(out)],
        stdin=config.stdout,
        capture_output=True,
        text=True,
        timeout=300,
        env=NARROW,
        check=False,
    )
    assert config.stdout is not None
    config.stdout.close()
    assert config.wait(timeout=60) == 0
    assert run.returncode == 0, run.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 2
    assert summary["runtime"] == "sim" and summary["torch_threads"] == 1


def test_config_written_to_a_file_at_40_columns_runs_unchanged(tmp_path: Path) -> None:
    from fedsys.config.resolve import default_config_text

    path = tmp_path / "my.yaml"
    with open(path, "w") as file:
        written = subprocess.run(
            [sys.executable, "-m", "fedsys.cli", "config"], stdout=file, env=NARROW, timeout=60
        )
    run = subprocess.run(
        [sys.executable, "-m", "fedsys.cli", "run", str(path), *TINY,
         "--output-dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300, env=NARROW, check=False,
    )

    assert written.returncode == 0
    assert path.read_text() == default_config_text()  # byte for byte: nothing wrapped
    assert run.returncode == 0, run.stderr
    assert "virtual time" in run.stdout  # a simulation's summary speaks of virtual time
    first = run.stdout.splitlines()[0]  # a long line, piped at 40 columns: not wrapped
    assert first.startswith("fedsys digits: 20 clients") and first.endswith("strategy=fedavg")


def test_a_bad_config_on_stdin_is_one_line_naming_stdin() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "fedsys.cli", "run", "-", "--quiet"],
        input="rounds: 3\ndataset:\n  nam: digits\n",
        capture_output=True, text=True, timeout=120, env=NARROW, check=False,
    )

    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "dataset.nam" in run.stderr
    assert "Traceback" not in run.stderr


def test_print_error_joins_a_message_of_several_lines(capsys: pytest.CaptureFixture[str]) -> None:
    from fedsys.cli.console import print_error

    print_error("error", "first line\n  second line\n")

    assert capsys.readouterr().err == "error: first line second line\n"


def _rendered(*renderables: object) -> str:
    file = io.StringIO()
    console = Console(file=file, width=200)
    for renderable in renderables:
        console.print(renderable)
    return file.getvalue()


def test_summary_table_shows_virtual_time_for_a_simulation_and_wall_time_for_a_deployment(
) -> None:
    from fedsys.cli.console import summary_table
    from fedsys.metrics.records import RoundRecord, RunResult

    records = (RoundRecord(0, 1.0, 4.0, 2.5, 3, 3, accuracy=0.5),)
    result = RunResult(records)
    simulated = {**result.summary(0.9), "runtime": "sim"}
    deployed = {**result.summary(0.9, clock="wall"), "runtime": "deploy", "elapsed_s": 6.0}

    sim_text = _rendered(summary_table(result, simulated))
    real_text = _rendered(summary_table(result, deployed))

    assert "virtual time" in sim_text and "wall time" in sim_text
    assert "elapsed" in real_text and "6.0 s" in real_text
    assert "training time" in real_text and "3.0 s" in real_text
    assert "virtual" not in real_text


@pytest.mark.parametrize(
    ("clock", "label"), [("virtual", "virtual 4.0 s"), ("wall", "elapsed 4.0 s")]
)
def test_the_rounds_bar_says_which_time_it_shows(clock: str, label: str) -> None:
    from fedsys.cli.console import add_rounds_task, progress_bar, round_updater
    from fedsys.metrics.records import RoundRecord

    bar = progress_bar(Console(file=io.StringIO()), 3, disable=False, clock=clock)
    task = add_rounds_task(bar, "rounds", 3)
    round_updater(bar, task)(RoundRecord(0, 0.0, 4.0, 0.1, 2, 2, accuracy=0.5))
    text = _rendered(bar.get_renderable())

    assert label in text and "1/3 rounds" in text and "acc 0.500" in text
    if clock == "wall":
        assert "virtual" not in text

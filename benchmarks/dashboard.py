"""What watching a run costs: ``fedsys run`` with and without ``--dashboard`` and a page open.

The run: 2,000 sync rounds of 100 clients each (Oort selection, over-commitment 1.3,
so 130 timelines a round), a cheap model (digits MLP 64-16-10, one local step of
batch 10, the vectorized backend) so that it finishes in minutes. Its round files
are what the dashboard reads: ``rounds.jsonl`` and the per-client ``clients.jsonl``.

1. ``fedsys run`` alone, timed from start to exit (a fresh interpreter each time).
2. ``fedsys run --dashboard 0`` with the run page open in Chromium for the whole run
   (it receives every round over server-sent events and redraws its charts),
   timed the same way. ``ratio`` = (2) / (1); the target is at most 1.03.
3. On the finished 2,000-round folder, ``fedsys dashboard``: the time from asking for
   the run page until its five charts are drawn (and the timeline view until its
   130 client rows are), the median of ``--loads`` page loads.

Runs alternate (without, with) ``--repeats`` times; the table shows each, the ratio
is of the medians. Timings on a shared machine move with its load: the table prints
the load average before and after.

Run: ``python benchmarks/dashboard.py [--rounds 2000] [--repeats 1] [--loads 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def run_config(rounds: int) -> dict[str, Any]:
    return {
        "seed": 0,
        "rounds": rounds,
        "clients_per_round": 100,
        "target_accuracy": 0.8,
        "dataset": {"name": "digits", "num_clients": 200, "partition": {"kind": "iid"}},
        "model": {"name": "mlp", "hidden": [16]},
        "train": {"local_steps": 1, "batch_size": 10, "lr": 0.1},
        "devices": {"source": "generated", "always_available": False},
        "selector": {"name": "oort"},
        "round": {"mode": "sync", "overcommit": 1.3},
        "eval": {"every": 20},
        "sim": {"backend": "vectorized", "chunk_size": 256},
    }


def fedsys(*args: str) -> list[str]:
    return [sys.executable, "-m", "fedsys", *args]


def timed_run(config: Path, out: Path, browser: Any | None) -> float:
    """Wall seconds of one ``fedsys run`` (with the dashboard and a page when ``browser``)."""
    args = ["run", str(config), "--quiet", "--overwrite", "--output-dir", str(out)]
    if browser is not None:
        args += ["--dashboard", "0"]
    started = time.perf_counter()
    proc = subprocess.Popen(fedsys(*args), stdout=subprocess.PIPE, text=True)
    page = None
    try:
        assert proc.stdout is not None
        if browser is not None:
            for line in proc.stdout:
                found = re.search(r"dashboard at (\S+)", line)
                if found:
                    page = browser.new_page(viewport={"width": 1300, "height": 900})
                    # The command bound the socket at once; it queues us until its child is up
                    # (seconds on a loaded machine), however long that takes.
                    page.goto(found.group(1), timeout=0)
                    break
        drain = threading.Thread(target=proc.stdout.read, daemon=True)
        drain.start()
        while proc.poll() is None:  # the page's event loop runs while we wait
            if page is not None:
                page.wait_for_timeout(200)
            else:
                time.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"fedsys run exited with {proc.returncode}")
    if page is not None:
        drawn = page.evaluate("(window.fedsysCharts.accuracy?.data[0] || []).length")
        page.close()
        if drawn <= 0:
            raise RuntimeError("the page never drew the run's accuracy")
    return elapsed


def page_load_times(browser: Any, folder: Path, loads: int) -> dict[str, float]:
    """Median seconds until the run page's charts (and a timeline) are drawn."""
    port_file = folder.parent / "dashboard.port"
    port_file.unlink(missing_ok=True)
    server = subprocess.Popen(
        fedsys("dashboard", str(folder), "--port", "0", "--port-file", str(port_file)),
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (port_file.is_file() and port_file.read_text().strip()):
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("fedsys dashboard did not start")
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port_file.read_text().strip()}/#/run/{folder.name}"
        last = json.loads((folder / "rounds.jsonl").read_text().splitlines()[-1])["round_idx"]
        times: dict[str, list[float]] = {"charts": [], "timeline": []}
        for _ in range(loads):
            for view, url, ready in (
                ("charts", base, "document.body.dataset.ready === 'overview'"),
                (
                    "timeline",
                    f"{base}?view=timeline&round={last}",
                    f"document.body.dataset.timeline === '{last}'",
                ),
            ):
                page = browser.new_page(viewport={"width": 1300, "height": 900})
                started = time.perf_counter()
                page.goto(url)
                page.wait_for_function(ready, timeout=120000)
                times[view].append(time.perf_counter() - started)
                page.close()
        return {view: statistics.median(values) for view, values in times.items()}
    finally:
        server.kill()
        server.wait(timeout=10)


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--loads", type=int, default=3)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    console = Console()
    load_before = load_average()
    with tempfile.TemporaryDirectory() as scratch, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        config = Path(scratch) / "run.yaml"
        config.write_text(yaml.safe_dump(run_config(args.rounds)))
        without, with_page = [], []
        for i in range(args.repeats):
            without.append(timed_run(config, Path(scratch) / "plain", None))
            console.print(f"repeat {i + 1}: without {without[-1]:.1f} s", highlight=False)
            with_page.append(timed_run(config, Path(scratch) / "watched", browser))
            console.print(f"repeat {i + 1}: with {with_page[-1]:.1f} s", highlight=False)
        folder = Path(scratch) / "plain"
        sizes = {name: (folder / name).stat().st_size for name in ("rounds.jsonl", "clients.jsonl")}
        loads = page_load_times(browser, folder, args.loads)
        browser.close()
    load_after = load_average()
    ratio = statistics.median(with_page) / statistics.median(without)

    table = Table(title=f"dashboard: {args.rounds} rounds x 100 clients (130 selected)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for i, (a, b) in enumerate(zip(without, with_page, strict=True)):
        table.add_row(f"fedsys run, wall s (repeat {i + 1})", f"{a:.1f}")
        table.add_row(f"fedsys run --dashboard + page open, wall s (repeat {i + 1})", f"{b:.1f}")
    table.add_row("run page: charts drawn, s (median)", f"{loads['charts']:.2f}")
    table.add_row("timeline of the last round drawn, s (median)", f"{loads['timeline']:.2f}")
    table.add_row("rounds.jsonl, MB", f"{sizes['rounds.jsonl'] / 1e6:.1f}")
    table.add_row("clients.jsonl, MB", f"{sizes['clients.jsonl'] / 1e6:.1f}")
    table.add_row("load average before / after", f"{load_before} / {load_after}")
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dashboard.json").write_text(
        json.dumps(
            {
                "rounds": args.rounds,
                "clients_per_round": 100,
                "run_wall_s": without,
                "run_with_dashboard_wall_s": with_page,
                "page_load_s": loads,
                "file_bytes": sizes,
                "load_average": [load_before, load_after],
                "ratio": ratio,
            },
            indent=2,
        )
        + "\n"
    )
    console.print(f"ratio: {ratio:.3f}", highlight=False)


if __name__ == "__main__":
    main()

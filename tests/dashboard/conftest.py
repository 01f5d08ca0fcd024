"""Fixtures of the dashboard tests: real runs, a real dashboard process, a real Chromium.

The browser is the system's Chromium (Debian package ``chromium``; ``.ci/run``
installs it) driven by Playwright; tests that need it are skipped, with the reason,
only where no Chromium exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the dashboard extra is not installed")
pytest.importorskip("uvicorn", reason="the dashboard extra is not installed")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]


def run_fedsys_sim(output_dir: Path, *overrides: str) -> Path:
    """A short real simulation (``fedsys run``) writing ``output_dir``."""
    from fedsys.cli import main

    args = ["run", "--quiet", "--output-dir", str(output_dir), "--set", "rounds=12"]
    args += ["--set", "eval.every=2", "--set", "devices.always_available=false"]
    for override in overrides:
        args += ["--set", override]
    assert main(args) == 0
    return output_dir


@pytest.fixture(scope="session")
def sim_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding two finished simulated runs: ``random`` and ``oort``."""
    root = tmp_path_factory.mktemp("runs")
    run_fedsys_sim(root / "random", "selector.name=random")
    run_fedsys_sim(root / "oort", "selector.name=oort")
    return root


def wait_for_file(path: Path, proc: subprocess.Popen[Any], timeout_s: float = 60.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().strip():
            return path.read_text().strip()
        if proc.poll() is not None:
            raise RuntimeError(f"the dashboard exited with {proc.returncode}")
        time.sleep(0.05)
    raise TimeoutError(f"no {path} after {timeout_s} s")


def wait_until_serving(url: str, timeout_s: float = 180.0) -> None:
    """Wait until the dashboard at ``url`` answers (a ``--dashboard`` child starts late
    on a loaded machine: its socket is bound at once, but it accepts once imported)."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url + "api/runs", timeout=10).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def start_dashboard(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start ``fedsys dashboard`` on a free port; returns its base URL. Always ended."""
    procs: list[subprocess.Popen[Any]] = []

    def start(*roots: Path, extra: tuple[str, ...] = ()) -> str:
        port_file = tmp_path / f"port{len(procs)}"
        cmd = [sys.executable, "-m", "fedsys", "dashboard", *map(str, roots)]
        cmd += ["--port", "0", "--port-file", str(port_file), *extra]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(proc)
        port = wait_for_file(port_file, proc)
        return f"http://127.0.0.1:{port}/"

    try:
        yield start
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """The system's Chromium under Playwright (skipped only where there is none).

    Module-scoped, not session-scoped: Playwright's sync API keeps an event loop
    running in the test process while it is open, so every later test in the same
    worker that calls ``asyncio.run`` would fail; it is closed when its module ends.
    """
    if not CHROMIUM.is_file() and shutil.which("chromium") is None:
        pytest.skip("no Chromium on this machine (install the Debian package 'chromium')")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    executable = str(CHROMIUM) if CHROMIUM.is_file() else shutil.which("chromium")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class Page:
    """A browser page that collects console errors and uncaught exceptions."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, url: str, ready: str) -> None:
        """Go to ``url`` and wait until the page says view ``ready`` is drawn."""
        self.page.goto(url)
        try:
            self.page.wait_for_function(f"document.body.dataset.ready === {ready!r}", timeout=20000)
        except Exception as exc:
            text = self.page.inner_text("body")[:2000]
            raise AssertionError(f"{url} never drew {ready!r}: {self.errors} {text}") from exc


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    try:
        yield Page(context.new_page())
    finally:
        context.close()

"""The wheel holds everything ``fedsys run`` needs and runs from a fresh environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import fedsys

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def test_wheel_installs_into_a_fresh_venv_and_runs(tmp_path: Path) -> None:
    # Prepare: a wheel built from this checkout, and a venv that has never seen fedsys.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    source = tmp_path / "source"  # a clean copy: no stale build/ folder can leak in
    shutil.copytree(
        ROOT / "fedsys", source / "fedsys", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    build = _run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path)],
        source,
        env,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("fedsys-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    assert made.returncode == 0, made.stderr
    fresh = venv / "bin" / "python"
    fresh_site = _run(
        [str(fresh), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        tmp_path,
        env,
    ).stdout.strip()
    # Dependencies come from this interpreter's site-packages as a plain path entry (its
    # .pth files, such as a development install of fedsys, are not processed).
    Path(fresh_site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(fresh), "install", "--no-deps"]
    installed = _run([*pip, str(wheel)], tmp_path, env)
    assert installed.returncode == 0, installed.stderr[-2000:]
    # Act: the console script, from a folder outside the checkout.
    where = _run([str(fresh), "-c", "import fedsys; print(fedsys.__file__)"], tmp_path, env)
    out = tmp_path / "out"
    ran = _run(
        [str(venv / "bin" / "fedsys"), "run", "--quiet", "--set", "rounds=2",
         "--set", "dataset.num_clients=20", "--output-dir", str(out)],
        tmp_path,
        env,
    )  # fmt: skip
    # Assert
    assert f"fedsys-{fedsys.__version__}-" in wheel.name
    for data in ("fedsys/examples/quickstart.yaml", "fedsys/traces/data/default_fleet.csv",
                 "fedsys/traces/FORMAT.md"):  # fmt: skip
        assert data in names
    assert any(name.endswith("licenses/LICENSE") for name in names)
    assert where.stdout.startswith(fresh_site), where.stdout + where.stderr
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert json.loads((out / "summary.json").read_text())["rounds"] == 2

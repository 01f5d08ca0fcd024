"""A hostile ``sites.yaml`` is refused by the real ``fedsys query`` before anything starts.

A site named ``../../../escape_probe`` would have named folders and files outside the
work folder; YAML aliases in ``privacy.domains`` (a "billion laughs") would have grown
the process by gigabytes. Both end in one line, with nothing written and nothing
allocated.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedsys.analytics.catalog import SitesFile, SiteSpec, load_sites
from fedsys.analytics.local_sites import local_cluster

LAUGHS = (
    "privacy:\n"
    "  domains:\n"
    '    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    "    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
    "    i: [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n"
)
"""About 700 bytes that a plain YAML loader expands to 9**9 strings (tens of GB)."""

MAX_RSS_KB = 1024 * 1024
"""The refusing process stays well below 1 GiB resident (an expansion needs many)."""


def _query(sites: Path, workdir: Path, logs: Path) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run ``fedsys query`` to its end: its output, and its own peak resident kilobytes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "80"}
    argv = [
        sys.executable,
        "-m",
        "fedsys",
        "query",
        "--sites",
        str(sites),
        "--workdir",
        str(workdir),
        "SELECT COUNT(*) FROM data",
    ]
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "out", "w") as out, open(logs / "err", "w") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
    deadline = time.monotonic() + 120
    try:
        while True:  # reap it ourselves: wait4 gives this child's own peak RSS
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            assert time.monotonic() < deadline, "fedsys query did not end within 120 s"
            time.sleep(0.05)
    finally:
        if not pid:
            proc.kill()
            os.waitpid(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    done = subprocess.CompletedProcess(
        argv, proc.returncode, (logs / "out").read_text(), (logs / "err").read_text()
    )
    return done, usage.ru_maxrss


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode in (1, 2), done.stdout + done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    return done.stderr


@pytest.fixture
def nest(tmp_path: Path) -> tuple[Path, Path]:
    """``tmp/a/b/c`` holds sites.yaml and a table; the work folder is ``tmp/a/b/c/work``."""
    folder = tmp_path / "a" / "b" / "c"
    folder.mkdir(parents=True)
    (folder / "t.csv").write_text("v\n1\n2\n")
    return folder, folder / "work"


def test_a_site_name_that_climbs_out_is_refused_and_nothing_is_written(nest, tmp_path):
    folder, work = nest
    sites = folder / "sites.yaml"
    sites.write_text(
        "dataset: demo\n"
        "sites:\n"
        "  - {name: s0, tables: {data: t.csv}}\n"
        '  - {name: "../../../escape_probe", tables: {data: t.csv}}\n'
    )

    done, _ = _query(sites, work, tmp_path / "logs")

    said = _one_line(done)
    assert "site name '../../../escape_probe' is not a plain name" in said
    assert not list(tmp_path.rglob("*escape_probe*"))
    written = {p.relative_to(work).as_posix() for p in work.rglob("*")}
    assert written <= {"query.log"}  # no catalog, token, key or site log


def test_an_alias_bomb_in_privacy_domains_is_refused_without_growing(nest, tmp_path):
    folder, work = nest
    sites = folder / "sites.yaml"
    sites.write_text("dataset: demo\nsites:\n  - {name: s0, tables: {data: t.csv}}\n" + LAUGHS)
    assert sites.stat().st_size < 1024

    done, peak_kb = _query(sites, work, tmp_path / "logs")

    said = _one_line(done)
    assert "anchors and aliases" in said and str(sites) in said
    assert peak_kb < MAX_RSS_KB
    assert not (work / "catalogs").exists()


def test_duplicate_keys_and_oversized_sites_files_are_refused(tmp_path):
    (tmp_path / "t.csv").write_text("v\n1\n")
    twice = tmp_path / "twice.yaml"
    twice.write_text("sites:\n  - {name: s0, tables: {data: t.csv}}\ndataset: a\ndataset: b\n")
    with pytest.raises(ValueError, match="duplicate key 'dataset'"):
        load_sites(twice)
    big = tmp_path / "big.yaml"
    big.write_text("sites:\n  - {name: s0, tables: {data: t.csv}}\n" + "#\n" * 600_000)
    with pytest.raises(ValueError, match="larger than 1024 KiB"):
        load_sites(big)


@pytest.mark.parametrize(
    ("field", "value", "what"),
    [("name", "../x", "site name"), ("dataset", "a/b", "dataset name")],
)
def test_names_checked_where_a_spec_is_built_in_code(tmp_path, field, value, what):
    site = {"name": "s0", "tables": {"data": str(tmp_path / "t.csv")}}
    if field == "name":
        site["name"] = value
        with pytest.raises(ValueError, match=f"{what} '{value}' is not a plain name"):
            SitesFile(sites=[SiteSpec(**site)])
        return
    spec = SitesFile(sites=[SiteSpec(**site)])
    spec.dataset = value  # changed after validation: the cluster checks again
    with pytest.raises(ValueError, match=f"{what} '{value}' is not a plain name"):
        local_cluster(spec, tmp_path / "work")
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize("ledger", ["../ledger.json", "/tmp/elsewhere.json", "sub/../../x.json"])
def test_a_ledger_outside_the_sites_folder_is_refused(tmp_path, ledger):
    folder = tmp_path / "sites"
    folder.mkdir()
    (folder / "t.csv").write_text("v\n1\n")
    path = folder / "sites.yaml"
    path.write_text(
        f"sites:\n  - {{name: s0, tables: {{data: t.csv}}}}\nprivacy: {{ledger: {ledger!r}}}\n"
    )

    with pytest.raises(ValueError, match="lies outside the sites file's folder"):
        load_sites(path)
    path.write_text("sites:\n  - {name: s0, tables: {data: t.csv}}\nprivacy: {ledger: l/b.json}\n")
    assert load_sites(path).privacy.ledger == str((folder / "l" / "b.json").resolve())

"""Local process supervision: real children, grandchildren, and signals they ignore."""

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fedsys.wire.supervise import (
    FEDSYS_ROOT,
    child_env,
    end_all,
    end_group,
    fedsys_command,
    spawn,
    wait_for_port,
)

DEAF = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    from pathlib import Path
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    grandchild = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    Path(sys.argv[1]).write_text(f"{grandchild.pid}\\n")
    Path(sys.argv[2]).write_text("4242\\n")
    time.sleep(600)
    """
)


def _gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs (exited, or a zombie waiting to be reaped)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in status


def _wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def deaf_child(tmp_path):
    pid_file, port_file = tmp_path / "grandchild", tmp_path / "port"
    child = spawn([sys.executable, "-c", DEAF, str(pid_file), str(port_file)],
                  tmp_path / "logs" / "deaf.out")
    try:
        yield child, pid_file, port_file
    finally:
        end_group(child, term_grace_s=0.0)


def test_a_child_that_ignores_sigterm_is_killed_with_its_grandchildren(deaf_child):
    child, pid_file, port_file = deaf_child
    assert wait_for_port(port_file, child, timeout_s=30, what="the deaf child") == 4242
    grandchild = int(pid_file.read_text())
    assert os.getpgid(grandchild) == child.pid  # the child leads its own group
    started = time.monotonic()
    end_group(child, term_grace_s=0.5)
    assert child.returncode is not None and child.returncode < 0
    assert _wait_gone(grandchild), "the grandchild outlived its group"
    assert time.monotonic() - started < 10


def test_end_all_lets_children_finish_first_then_ends_the_rest(tmp_path):
    quick = spawn([sys.executable, "-c", "print('bye')"], tmp_path / "quick.out")
    slow = spawn([sys.executable, "-c", "import time; time.sleep(600)"], tmp_path / "slow.out")
    end_all([quick, slow], wait_s=5.0, term_grace_s=2.0)
    assert quick.returncode == 0
    assert slow.returncode == -15  # it took SIGTERM within the grace
    assert (tmp_path / "quick.out").read_text().strip() == "bye"


def test_children_import_this_fedsys_with_one_thread_and_unbuffered(tmp_path):
    probe = "import fedsys, os; print(fedsys.__file__, os.environ['OMP_NUM_THREADS'], " \
            "os.environ['PYTHONUNBUFFERED'])"
    env = child_env({"PYTHONPATH": f"{FEDSYS_ROOT}"})  # nothing else on the path
    child = spawn([sys.executable, "-c", probe], tmp_path / "probe.out", cwd=tmp_path, env=env)
    assert child.wait(timeout=60) == 0
    path, threads, unbuffered = (tmp_path / "probe.out").read_text().split()
    assert Path(path).resolve().is_relative_to(FEDSYS_ROOT)
    assert (threads, unbuffered) == ("1", "1")
    assert child_env()["PYTHONPATH"].split(os.pathsep)[0] == str(FEDSYS_ROOT)
    assert fedsys_command("server", "x")[1:] == ["-m", "fedsys", "server", "x"]


def test_wait_for_port_fails_when_the_child_exits_first(tmp_path):
    child = spawn([sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "exit.out")
    with pytest.raises(RuntimeError, match="exited with 3 before listening"):
        wait_for_port(tmp_path / "port", child, timeout_s=30, what="the server")
    sleeper = spawn([sys.executable, "-c", "import time; time.sleep(600)"], tmp_path / "s.out")
    try:
        with pytest.raises(TimeoutError, match="did not report its port within 1 s"):
            wait_for_port(tmp_path / "port", sleeper, timeout_s=1.0)
    finally:
        end_group(sleeper, term_grace_s=0.0)

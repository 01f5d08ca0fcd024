import pytest

from tests.deploy.harness import Processes


@pytest.fixture
def processes(tmp_path):
    procs = Processes(tmp_path / "logs")
    try:
        yield procs
    finally:
        procs.close()

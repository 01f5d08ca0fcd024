"""JSON-lines logs: the same fields from every runtime."""

import json
import logging

import pytest

from fedsys.wire.logs import setup_logging


@pytest.fixture
def restore_fedsys_logger():
    root = logging.getLogger("fedsys")
    saved = (list(root.handlers), root.level, root.propagate)
    yield
    for handler in root.handlers:
        handler.close()
    root.handlers[:], root.level, root.propagate = saved


def test_each_record_is_one_json_line_with_the_fields(tmp_path, restore_fedsys_logger):
    log_file = tmp_path / "logs" / "site.log"
    setup_logging(log_file, to_stderr=False)
    logging.getLogger("fedsys.silo.site").warning(
        "reconnecting", extra={"reason": "UNAVAILABLE: down", "in_s": 0.5}
    )
    logging.getLogger("fedsys.deploy.client").debug("not at INFO")
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        logging.getLogger("fedsys.silo.coordinator").exception("job failed")
    lines = log_file.read_text().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert set(first) == {"ts", "level", "logger", "msg", "reason", "in_s"}
    assert first["level"] == "warning" and first["logger"] == "fedsys.silo.site"
    assert (first["msg"], first["reason"], first["in_s"]) == (
        "reconnecting", "UNAVAILABLE: down", 0.5)
    assert isinstance(first["ts"], float)
    assert second["msg"] == "job failed" and "ValueError: bad" in second["error"]

"""A site's own rules: site.yaml loading, its budget ledger, its audit log and its gate."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from fedsys.config.loader import ConfigError
from fedsys.silo.audit import AuditLog, AuditRecord, read_audit
from fedsys.silo.gate import POLICY_KEY, SiteGate, TaskRequest
from fedsys.silo.site_ledger import BudgetRefusedError, SiteLedger
from fedsys.silo.site_rules import load_site_rules
from fedsys.silo.task_registry import TaskRegistry


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


def test_site_yaml_paths_become_absolute_and_the_catalog_is_written(tmp_path):
    path = _write(tmp_path, "name: h1\nsql:\n  dataset: demo\n  tables:\n"
                            "    t: {path: t.csv, columns: [a], min_group_size: 3}\n")
    rules = load_site_rules(path)
    assert rules.name == "h1"
    assert rules.sql.tables["t"].path == str((tmp_path / "t.csv").resolve())
    assert rules.privacy.ledger == str((tmp_path / "site_ledger.json").resolve())
    datasets = rules.datasets()
    catalog = json.loads(Path(datasets["demo"]).read_text())
    assert catalog == {"tables": {"t": str((tmp_path / "t.csv").resolve())},
                       "columns": {"t": ["a"]}}
    assert rules.table("t").readable("a") and not rules.table("t").readable("b")


@pytest.mark.parametrize(("text", "message"), [
    ("sql:\n  tabels: {}\n", "sql.tabels: unknown key"),
    ("sql:\n  tables:\n    t: {path: t.csv, colums: [a]}\n", "sql.tables.t.colums: unknown key"),
    ("sql:\n  tables:\n    t: {path: missing.csv}\n", "no file"),
    ("sql:\n  tables:\n    t: {path: t.csv, columns: [a], dp_columns: [b]}\n",
     "not in the readable columns"),
    ("accept: [analytics, mining]\n", "accept.1"),
    ("sql: {min_group_size: 1}\nsql: {min_group_size: 2}\n", "duplicate key"),
    ("training:\n  datasets:\n    d: {client: 1}\n", "exactly one of path"),
])
def test_a_wrong_site_yaml_fails_naming_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_site_rules(_write(tmp_path, text))


def test_the_ledger_keeps_each_analysts_budget_and_the_sites_total(tmp_path):
    ledger = SiteLedger(tmp_path / "l.json", budget_epsilon=1.0, analyst_epsilon=0.6)
    ledger.charge("ann", 0.5, 0.0, "q1")
    with pytest.raises(BudgetRefusedError, match="analyst ann"):
        ledger.charge("ann", 0.2, 0.0, "q2")
    ledger.charge("bob", 0.5, 0.0, "q3")
    with pytest.raises(BudgetRefusedError, match="site's total"):
        ledger.charge("cy", 0.1, 0.0, "q4")
    spent = ledger.spent("ann")
    assert (spent.analyst_epsilon, spent.total_epsilon, spent.charges) == (0.5, 1.0, 2)


def _charge_once(path: str, start: multiprocessing.synchronize.Event, out: multiprocessing.Queue
                 ) -> None:
    start.wait(10)
    try:
        SiteLedger(Path(path), budget_epsilon=1.5).charge("ann", 0.5, 0.0, "q")
        out.put(True)
    except BudgetRefusedError:
        out.put(False)


def test_six_processes_charging_at_once_never_overspend(tmp_path):
    context = multiprocessing.get_context("fork")  # the children only lock and write a file
    start, out = context.Event(), context.Queue()
    procs = [context.Process(target=_charge_once, args=(str(tmp_path / "l.json"), start, out))
             for _ in range(6)]
    for proc in procs:
        proc.start()
    try:
        start.set()
        results = [out.get(timeout=120) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    assert sorted(results) == [False] * 3 + [True] * 3
    assert len(json.loads((tmp_path / "l.json").read_text())["charges"]) == 3


def test_the_audit_log_appends_one_json_line_per_record(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append(AuditRecord("run", "ann", "j1", "t1", "analytics.partial", tables=("t",)))
    log.append(AuditRecord("refused", "bob", "j2", "t2", "silo.spin", reason="no"))
    records = list(read_audit(tmp_path / "audit.jsonl"))
    assert [(r["decision"], r["analyst"], r["tables"]) for r in records] == [
        ("run", "ann", ["t"]), ("refused", "bob", [])]
    assert (tmp_path / "audit.jsonl").stat().st_mode & 0o777 == 0o600


def _gate(tmp_path: Path, text: str, registry: TaskRegistry) -> SiteGate:
    return SiteGate(load_site_rules(_write(tmp_path, text)), registry)


def _request(task: str, params: dict, dataset: str = "") -> TaskRequest:
    return TaskRequest("ann", "job", "t1", task, dataset, params)


def test_the_gate_refuses_a_job_kind_the_site_does_not_accept_and_audits_it(tmp_path):
    gate = _gate(tmp_path, "accept: [analytics]\n", TaskRegistry())
    verdict = gate.admit(_request("silo.spin", {"ms": 1}))
    assert "does not run test jobs" in verdict.refused
    (record,) = read_audit(Path(gate.rules.audit_log))
    assert record["decision"] == "refused" and record["task"] == "silo.spin"
    assert record["analyst"] == "ann" and "test jobs" in record["reason"]


def test_a_coordinator_cannot_hand_a_task_its_own_site_policy(tmp_path):
    registry = TaskRegistry()
    verdict = _gate(tmp_path, "accept: [test]\n", registry).admit(
        _request("silo.spin", {"ms": 1, POLICY_KEY: {"min_group_size": 0}}))
    assert not verdict.refused and POLICY_KEY not in verdict.params
    trusted = SiteGate(None, registry).admit(_request("silo.spin", {POLICY_KEY: {}}))
    assert POLICY_KEY not in trusted.params


def test_the_gate_charges_a_checkers_cost_before_admitting_and_refuses_past_the_budget(
        tmp_path):
    from fedsys.silo.gate import Admission

    registry = TaskRegistry()
    registry.register_checker("analytics.costly",
                              lambda rules, request: Admission(request.params, epsilon=0.4))
    gate = _gate(tmp_path, "privacy: {budget_epsilon: 1.0, max_query_epsilon: 0.5}\n",
                 registry)
    verdicts = [gate.admit(_request("analytics.costly", {})) for _ in range(3)]
    assert [bool(v.refused) for v in verdicts] == [False, False, True]
    assert "budget is spent" in verdicts[2].refused
    records = list(read_audit(Path(gate.rules.audit_log)))
    assert [(r["decision"], r["epsilon"]) for r in records] == [
        ("run", 0.4), ("run", 0.4), ("refused", 0.0)]


def test_training_tasks_run_only_allowed_models_on_training_datasets(tmp_path):
    import fedsys.silo.gate as gate_module

    registry = TaskRegistry()
    registry.set_kind("silo.train", "training")
    registry.register_checker("silo.train", gate_module._check_train)
    (tmp_path / "d.npz").write_bytes(b"")
    gate = _gate(tmp_path, "training:\n  datasets: {scans: {path: d.npz}}\n  models: [mlp]\n"
                           "  factories: ['my_pkg.models:net']\n", registry)
    ok = gate.admit(_request("silo.train", {"model": {"kind": "mlp"}}, "scans"))
    cnn = gate.admit(_request("silo.train", {"model": {"kind": "cnn1d"}}, "scans"))
    code = gate.admit(_request("silo.train", {"model": {"factory": "evil:run"}}, "scans"))
    listed = gate.admit(_request("silo.train", {"model": {"factory": "my_pkg.models:net"}},
                                 "scans"))
    other = gate.admit(_request("silo.train", {"model": {"kind": "mlp"}}, "tables"))
    assert not ok.refused and not listed.refused
    assert "model 'cnn1d' is not allowed" in cnn.refused
    assert "factory 'evil:run' is not allowed" in code.refused
    assert "not exposed for training" in other.refused


def test_site_command_names_a_wrong_key_of_site_yaml_in_one_line(tmp_path, capsys):
    from fedsys.cli import main

    (tmp_path / "token").write_text("t0\n")
    config = _write(tmp_path, "sql:\n  tables:\n    t: {path: t.csv, column: [a]}\n")
    status = main(["silo", "site", "--config", str(config), "--token-file",
                   str(tmp_path / "token"), "--insecure"])
    err = capsys.readouterr().err
    assert status == 2 and "sql.tables.t.column: unknown key" in err
    assert "Traceback" not in err


def test_site_command_needs_a_coordinator_from_the_flag_or_site_yaml(tmp_path, capsys):
    from fedsys.cli import main

    (tmp_path / "token").write_text("t0\n")
    config = _write(tmp_path, "sql:\n  tables:\n    t: {path: t.csv}\n")
    status = main(["silo", "site", "--config", str(config), "--token-file",
                   str(tmp_path / "token"), "--insecure"])
    assert status == 1 and "--coordinator" in capsys.readouterr().err


def test_a_task_the_site_cannot_check_is_refused_not_run(tmp_path):
    registry = TaskRegistry()

    def broken(rules, request):
        raise RuntimeError("checker bug")

    registry.register_checker("analytics.odd", broken)
    gate = _gate(tmp_path, "accept: [analytics]\n", registry)
    verdict = gate.admit(_request("analytics.odd", {}))
    assert "could not check the task" in verdict.refused and "checker bug" in verdict.refused
    (record,) = read_audit(Path(gate.rules.audit_log))
    assert record["decision"] == "refused"


def test_a_training_dataset_from_a_run_config_section_is_the_sites_client_share(tmp_path):
    from fedsys.config.workload import DatasetConfig
    from fedsys.parts.builders import build_dataset
    from fedsys.silo.task_registry import TaskContext

    section = "{name: digits, num_clients: 4, partition: {kind: iid}}"
    rules = load_site_rules(_write(
        tmp_path, f"training:\n  datasets:\n    share: {{dataset: {section}, client: 2, "
                  f"seed: 3}}\n"))
    path = Path(rules.datasets()["share"])
    arrays = TaskContext(site="h1", task_id="t", dataset="share", data_path=path).arrays()
    expected_x, expected_y = build_dataset(
        DatasetConfig(name="digits", num_clients=4, partition={"kind": "iid"}), 3).client_data(2)
    np.testing.assert_allclose(arrays["x"], expected_x.numpy())
    np.testing.assert_array_equal(arrays["y"], expected_y.numpy())
    assert arrays["x"].dtype == np.float32 and arrays["y"].dtype == np.int64

"""``fedsys query``: a real run over two sites, and one-line errors before any site starts."""

import json

import pytest

from fedsys.cli import main

from .conftest import central, write_site_tables


@pytest.fixture
def sites_file(tmp_path):
    files = write_site_tables(tmp_path / "tables", sites=("a", "b"))
    path = tmp_path / "sites.yaml"
    path.write_text(
        "dataset: demo\n"
        "sites:\n"
        f"  - {{name: a, tables: {{data: {files['a'].relative_to(tmp_path)}}}}}\n"
        f"  - {{name: b, tables: {{data: {files['b'].relative_to(tmp_path)}}}}}\n"
        "privacy: {budget_epsilon: 1.0, bounds: {v: [0, 100]}}\n")
    return path, files


def test_query_prints_the_federated_answer_as_json(sites_file, capsys):
    path, files = sites_file
    sql = "SELECT label, COUNT(*) AS n, AVG(v) AS mean FROM data GROUP BY label ORDER BY label"
    assert main(["query", "--sites", str(path), "--json", "--parts", "2", sql]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["columns"] == ["label", "n", "mean"]
    expected = central(files, sql, sites=("a", "b"))
    assert [tuple(r) for r in out["rows"]] == [tuple(r) for r in expected]
    assert out["bytes_moved"] > 0


@pytest.mark.parametrize(("argv", "message"), [
    (["SELECT MEDIAN(x) FROM data"], "MEDIAN has no mergeable form"),
    (["SELECT a.x, COUNT(*) FROM data a JOIN other b ON a.k = b.k GROUP BY a.x"], "JOIN"),
    (["--epsilon", "1", "SELECT MIN(v) FROM data"], "MIN has no form under differential"),
    (["--epsilon", "1", "SELECT SUM(x) FROM data"], "bounds for column 'x'"),
    (["--secure", "SELECT label, SUM(v) FROM data GROUP BY label"], "declared values"),
])
def test_bad_queries_are_one_line_errors(sites_file, capsys, argv, message):
    path, _ = sites_file
    assert main(["query", "--sites", str(path), *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_bad_sites_file_names_the_problem(tmp_path, capsys):
    path = tmp_path / "sites.yaml"
    path.write_text("sites:\n  - {name: a, tables: {data: missing.csv}}\n")
    assert main(["query", "--sites", str(path), "SELECT COUNT(*) FROM data"]) == 1
    assert "missing.csv" in capsys.readouterr().err
    path.write_text("sites:\n  - {name: a, tables: {data: x.csv}, colour: red}\n")
    assert main(["query", "--sites", str(path), "SELECT COUNT(*) FROM data"]) == 1
    assert "colour" in capsys.readouterr().err

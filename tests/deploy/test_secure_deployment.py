"""Secure aggregation in a real deployment: 8 client processes over TLS gRPC."""

from __future__ import annotations

import pytest

from fedsys.deploy.secure_round import _degree
from fedsys.secure.graph import default_degree
from tests.deploy.harness import provision, rounds_done, write_config


@pytest.mark.timeout(600)
def test_eight_clients_train_digits_with_secure_aggregation(tmp_path, processes):
    pki = provision(tmp_path / "pki", 8)
    config = write_config(
        tmp_path / "run.yaml",
        tmp_path / "out",
        pki,
        rounds=12,
        eval__every=12,
        deploy__secure_aggregation="secagg+",
        deploy__secure_degree=4,
        deploy__secure_threshold=0.6,
    )
    server, port = processes.server(config, tmp_path / "port")
    clients = [processes.client(port, pki, i) for i in range(8)]

    assert server.wait(timeout=480) == 0, processes.log("server")
    for client in clients:
        assert client.wait(timeout=30) == 0, processes.log("client-0000")

    records = rounds_done(tmp_path / "out")
    assert [r["round_idx"] for r in records] == list(range(12))
    assert all(r["participants"] == 8 and r["aggregated"] for r in records)
    secure = [r["secure_aggregation"] for r in records]
    assert all(s["error"] is None and s["inputs"] == 8 and s["degree"] == 4 for s in secure)
    assert records[-1]["accuracy"] >= 0.85


def test_secagg_plus_defaults_to_a_logarithmic_degree_and_secagg_to_all_pairs():
    assert _degree("secagg+", None, 100) == default_degree(100) == 20
    assert _degree("secagg+", 6, 100) == 6
    assert _degree("secagg", None, 100) is None

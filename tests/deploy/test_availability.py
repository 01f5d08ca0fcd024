"""A real deployment feeds the session ends devices report to an availability-aware selector."""

from __future__ import annotations

from tests.deploy.harness import provision, rounds_done, write_config

LEAVING = {0, 1, 2}
STAYING = {3, 4, 5}


def test_devices_that_report_an_ending_session_are_not_picked(tmp_path, processes):
    pki = provision(tmp_path / "pki", 6)
    out = tmp_path / "out"
    config = write_config(
        tmp_path / "run.yaml",
        out,
        pki,
        rounds=5,
        clients_per_round=3,
        dataset={"name": "digits", "num_clients": 6, "partition": {"kind": "iid"}},
        selector={"name": "availability", "base": {"name": "random"}, "pool": 1.0},
        round={"mode": "sync", "overcommit": 1.0},
    )
    server, port = processes.server(config, tmp_path / "port")
    for index in range(6):
        session_s = "0" if index in LEAVING else "3600"
        processes.client(port, pki, index, "--session-s", session_s)
    assert server.wait(timeout=300) == 0, processes.log("server")
    records = rounds_done(out)
    assert len(records) == 5
    chosen = [{c["client_id"] for c in r["clients"]} for r in records]
    # Round 0 may start before every device has subscribed; from then on all six are
    # idle at each selection and a random pick of 3 would include a leaver 95 % of the
    # time: only the devices' reports keep them out.
    assert all(picked == STAYING for picked in chosen[1:]), chosen

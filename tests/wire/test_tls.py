"""Provisioning writes files named after clients: a name that would leave the folder is refused."""

import re

import pytest

from fedsys.wire import tls


def test_provision_refuses_a_traversing_client_name_before_writing(tmp_path) -> None:
    out = tmp_path / "pki" / "inner"

    with pytest.raises(
        ValueError, match=re.escape("client name '../../escape' is not a plain name")
    ):
        tls.provision(out, ["client-0000", "../../escape"])

    assert not (tmp_path / "pki").exists()
    assert not list(tmp_path.rglob("escape*"))


def test_missing_server_certificates_name_the_file_and_the_command(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"server.key.*fedsys certs .*nowhere") as info:
        tls.server_credentials(tmp_path / "nowhere")
    assert "does not exist" in str(info.value)

"""``fedsys fidelity`` and ``fedsys client --profile`` refuse bad input in one line."""

from __future__ import annotations

from fedsys.cli import main


def test_fidelity_refuses_a_negative_warmup(capsys) -> None:
    status = main(["fidelity", "--warmup-s", "-1"])

    err = capsys.readouterr().err
    assert status == 1
    assert "--warmup-s must be >= 0" in err and "Traceback" not in err


def test_emulated_client_needs_traces_and_config(capsys, tmp_path) -> None:
    token = tmp_path / "t.token"
    token.write_text("abc\n")

    status = main(
        ["client", "--server", "127.0.0.1:1", "--token-file", str(token), "--profile", "0"]
    )

    err = capsys.readouterr().err
    assert status == 1
    assert "--profile needs --traces FILE and --config RUN.yaml" in err


def test_client_without_a_data_source_says_which_flags_it_needs(capsys, tmp_path) -> None:
    token = tmp_path / "t.token"
    token.write_text("abc\n")

    status = main(["client", "--server", "127.0.0.1:1", "--token-file", str(token)])

    assert status == 1
    assert "needs --token-file and one of --data-index, --data" in capsys.readouterr().err


def test_a_bad_profile_list_is_named(capsys, tmp_path) -> None:
    status = main(["client", "--server", "127.0.0.1:1", "--profile", "x-1"])

    assert status == 1
    assert "--profile 'x-1' is not a device id" in capsys.readouterr().err

"""Names that become file names are one plain path component."""

import pytest

from fedsys.core.names import MAX_NAME_LENGTH, plain_name


@pytest.mark.parametrize("name", ["s0", "site-1", "client_0003", "Hospital.A", "a" * 128])
def test_plain_names_pass_unchanged(name: str) -> None:
    assert plain_name(name, "site name") == name


@pytest.mark.parametrize(
    "name",
    [
        "../../../escape_probe",
        "..",
        ".",
        ".hidden",
        "/etc/passwd",
        "a/b",
        "a\\b",
        "-rf",
        "",
        "tab\there",
        "nul\x00",
        "a" * (MAX_NAME_LENGTH + 1),
        3,
        None,
    ],
)
def test_names_that_could_leave_their_folder_are_refused_in_one_line(name: object) -> None:
    with pytest.raises(ValueError, match=r"^site name .* is not a plain name") as info:
        plain_name(name, "site name")
    assert "\n" not in str(info.value)

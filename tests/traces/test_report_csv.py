"""fedsys CSV format, convert/show and the summary."""

import pickle
from pathlib import Path

import numpy as np
import pytest

from fedsys.traces import (
    DeviceFleet,
    convert,
    format_summary,
    generate_fleet,
    load_fleet,
    load_fleet_file,
    save_fleet,
    show,
    summarize,
)

FIELDS = (
    "compute_s_per_sample",
    "down_bytes_per_s",
    "up_bytes_per_s",
    "period_s",
    "avail_offsets",
    "avail_starts",
    "avail_ends",
)


def assert_same(a: DeviceFleet, b: DeviceFleet) -> None:
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.device_model == b.device_model


def small_fleet() -> DeviceFleet:
    return DeviceFleet(
        compute_s_per_sample=np.array([0.1 / 3, 0.25]),
        down_bytes_per_s=np.array([1e6 / 7, np.inf]),
        up_bytes_per_s=np.array([2.5e5, 1e6]),
        period_s=np.array([86_400.5, 0.0]),
        avail_offsets=np.array([0, 2, 2]),
        avail_starts=np.array([0.1, 7200.0]),
        avail_ends=np.array([3600.25, 86_400.5]),
        device_model=("Pixel, 4", ""),
    )


def test_csv_round_trip_is_bit_exact(tmp_path: Path) -> None:
    fleet = small_fleet()
    assert_same(fleet, load_fleet(save_fleet(fleet, tmp_path / "f.csv")))
    text = (tmp_path / "f.csv").read_text().splitlines()
    assert text[0] == "# fedsys-device-trace v1"
    assert text[3].endswith("0.1:3600.25;7200:86400.5")


def test_csv_rows_in_any_order_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "# fedsys-device-trace v1\n# note\n"
        "client_id,compute_s_per_sample,down_bytes_per_s,up_bytes_per_s,period_s,"
        "device_model,sessions\n"
        "1,0.5,100,100,0,,\n"
        "0,0.1,200,50,100,,10:20;30:40\n"
    )
    fleet = load_fleet(path)
    np.testing.assert_array_equal(fleet.compute_s_per_sample, [0.1, 0.5])
    assert fleet.available_clients(35.0).tolist() == [0, 1]
    assert fleet.device_model is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("0,0.1,200,50,100,,20:10\n", "start <= end"),
        ("0,0.1,200,50,100,,10-20\n", "data row 1"),
        ("1,0.1,200,50,100,,\n", "0..0"),
    ],
)
def test_csv_errors_name_the_problem(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    header = (
        "client_id,compute_s_per_sample,down_bytes_per_s,up_bytes_per_s,period_s,"
        "device_model,sessions\n"
    )
    path.write_text("# fedsys-device-trace v1\n" + header + body)
    with pytest.raises(ValueError, match=message):
        load_fleet(path)


def test_csv_without_version_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("client_id\n")
    with pytest.raises(ValueError, match="fedsys-device-trace"):
        load_fleet(path)


def test_convert_both_ways(tmp_path: Path) -> None:
    fleet = generate_fleet(30, seed=4)
    csv_path = save_fleet(fleet, tmp_path / "a.csv")
    convert(csv_path, tmp_path / "fedscale")
    folder = tmp_path / "fedscale"
    assert (folder / "client_device_capacity").exists()
    back = convert(folder, tmp_path / "b.csv")
    np.testing.assert_allclose(back.compute_s_per_sample, fleet.compute_s_per_sample)
    np.testing.assert_allclose(back.down_bytes_per_s, fleet.down_bytes_per_s)
    for name in ("period_s", "avail_offsets", "avail_starts", "avail_ends"):
        np.testing.assert_array_equal(getattr(back, name), getattr(fleet, name))
    pair = [folder / "client_behave_trace", folder / "client_device_capacity"]
    assert_same(load_fleet_file(pair), load_fleet(tmp_path / "b.csv"))


def test_load_fleet_file_capacity_only_and_bad_input(tmp_path: Path) -> None:
    cap = tmp_path / "cap"
    cap.write_bytes(pickle.dumps({5: {"computation": 10.0, "communication": 80.0}}))
    fleet = load_fleet_file(cap)
    assert fleet.num_clients == 1 and fleet.untraced.all()
    other = tmp_path / "other"
    other.write_bytes(pickle.dumps({1: [1, 2]}))
    with pytest.raises(ValueError, match="neither"):
        load_fleet_file(other)


def test_show_summarizes_and_plots(tmp_path: Path) -> None:
    path = save_fleet(generate_fleet(200, seed=1), tmp_path / "f.csv")
    summary = show(path, tmp_path / "hist.png")
    assert (tmp_path / "hist.png").stat().st_size > 10_000
    assert summary["num_clients"] == 200
    compute = summary["compute_s_per_sample"]
    assert compute["p5"] < compute["p25"] < compute["p50"] < compute["p75"] < compute["p95"]
    assert 0.2 < summary["mean_availability"] < 0.5
    assert "down Mbit/s" in format_summary(summary)


def test_summary_counts_untraced_and_never_online() -> None:
    summary = summarize(small_fleet().take([1, 1]))
    assert summary["always_online"] == 2 and summary["mean_availability"] == 1.0
    assert np.isnan(summary["sessions_per_day"]["p50"])

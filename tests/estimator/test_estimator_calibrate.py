"""Calibration of an analytical profile against onnxruntime measurements, and fidelity figures."""

from __future__ import annotations

import math

import pytest

from gen5nas.cli import main
from gen5nas.estimator.calibrate import calibrate, measure, predict
from gen5nas.estimator.engine import EstimatorEngine
from gen5nas.estimator.fidelity import fidelity
from gen5nas.estimator.profiles import load_profile_file
from gen5nas.estimator.synthetic import random_convnets


def test_fidelity_by_hand() -> None:
    f = fidelity([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 5.0])
    assert f.n == 4 and f.mape == pytest.approx(5.0) and f.within_10pct == 0.75
    assert f.kendall_tau == pytest.approx(1.0) and f.spearman_rho == pytest.approx(1.0)
    reversed_ = fidelity([3.0, 2.0, 1.0], [1.0, 2.0, 3.0])
    assert reversed_.kendall_tau == pytest.approx(-1.0)
    assert math.isnan(fidelity([1.0], [2.0]).kendall_tau)


def test_calibration_fits_measured_latencies() -> None:
    engine = EstimatorEngine()
    models = [(f"m{i}", m) for i, m in enumerate(random_convnets(8, seed=3, resolutions=(32, 64)))]
    samples = measure(models, engine, "cpu-ort")
    assert all(s.measured_ms > 0 for s in samples)
    train, held = samples[:5], samples[5:]
    report = calibrate(engine.registry.get("cpu-ort"), train, held, name="cpu-ort-fit")
    before, after = report.train
    assert after.mape < before.mape  # the fit improves what it was fitted on
    assert report.held_out is not None and report.held_out[1].n == 3
    assert "efficiency.conv" in report.fitted and "layer_overhead_us" in report.fitted
    assert report.after.name == "cpu-ort-fit"
    assert report.after.sources["layer_overhead_us"].startswith("calibrated")
    # The calibrated parameters are what predict() uses; untouched ones are kept (a peak such
    # as mac_units may be raised, with efficiencies kept <= 1: see test_estimator_fidelity.py).
    assert report.after.params["sram_kib"] == report.before.params["sram_kib"]
    assert predict(report.after, train) != predict(report.before, train)
    assert "held-out, after" in report.table()


def test_calibrate_cli_writes_a_servable_profile(tmp_path, capsys) -> None:
    out = tmp_path / "cal" / "cpu.yaml"
    argv = ["estimator", "calibrate", "--profile", "cpu-ort", "--models", "0",
            "--synthetic", "6", "--out", str(out), "--name", "cpu-ort-cal"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "MAPE" in printed and "held-out, after" in printed
    profile = load_profile_file(out)
    assert profile.name == "cpu-ort-cal" and "onnxruntime" in profile.backends
    # Served from --profiles DIR alongside the shipped ones.
    from gen5nas.estimator.profiles import ProfileRegistry

    assert "cpu-ort-cal" in ProfileRegistry([out.parent]).names()


def test_calibrate_cli_reports_a_clear_error() -> None:
    assert main(["estimator", "calibrate", "--models", "0", "--synthetic", "1"]) == 2


def _table_rows(printed: str) -> dict[str, list[str]]:
    """The fidelity table's rows by label: [n, MAPE, within10%, tau, rho]."""
    rows = {}
    for line in printed.splitlines():
        label, _, rest = line.partition("  ")
        if label.startswith(("train, ", "held-out, ")):
            rows[label.strip()] = rest.split()
    return rows


def test_calibrate_cli_on_subnets_of_a_space(tmp_path, capsys) -> None:
    # The main path: random subnets of a search space, measured here with onnxruntime.
    out = tmp_path / "tiny.yaml"
    argv = ["estimator", "calibrate", "--space", "mobilenetv2_tiny", "--models", "3",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    header = next(line for line in printed.splitlines() if "MAPE" in line).split()
    assert header[-2:] == ["tau", "rho"]
    rows = _table_rows(printed)
    # 3 models, --held-out 0.3: 1 held out, 2 to fit on; tau/rho of 2 models is +-1 (or nan).
    assert rows["train, after"][0] == "2" and rows["held-out, after"][0] == "1"
    tau, rho = (float(v) for v in rows["train, after"][-2:])
    assert all(math.isnan(v) or -1 <= v <= 1 for v in (tau, rho))
    assert load_profile_file(out).name == "cpu-ort"


def _measurements_csv(tmp_path, n: int) -> tuple[list[str], str]:
    """``n`` synthetic models as files and a CSV of 'board' latencies (analytical x 3)."""
    engine = EstimatorEngine()
    paths, lines = [], ["model,latency_ms"]
    for i, data in enumerate(random_convnets(n, seed=7)):
        path = tmp_path / f"m{i}.onnx"
        path.write_bytes(data)
        ms = engine.estimate(data, profile="cpu-ort", backend="analytical").latency_ms
        paths.append(str(path))
        lines.append(f"{path},{3 * ms}")  # type: ignore[operator]
    csv_path = tmp_path / "board.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    return paths, str(csv_path)


def test_calibrate_cli_holds_out_measured_rows(tmp_path, capsys) -> None:
    paths, csv_path = _measurements_csv(tmp_path, 5)
    argv = ["estimator", "calibrate", "--measurements", csv_path, "--held-out", "0",
            "--held-out-onnx", *paths[:2], "--out", str(tmp_path / "cal.yaml")]  # fmt: skip
    assert main(argv) == 0
    rows = _table_rows(capsys.readouterr().out)
    # The two named rows are the held-out set (they used to be dropped without a word).
    assert rows["train, after"][0] == "3" and rows["held-out, after"][0] == "2"
    assert float(rows["held-out, after"][1]) < float(rows["held-out, before"][1])  # MAPE


def test_calibrate_cli_refuses_held_out_files_the_measurements_lack(tmp_path, capsys) -> None:
    paths, csv_path = _measurements_csv(tmp_path, 3)
    stray = tmp_path / "stray.onnx"
    stray.write_bytes(random_convnets(1, seed=9)[0])
    base = ["estimator", "calibrate", "--measurements", csv_path, "--out", str(tmp_path / "c.yaml")]
    assert main([*base, "--held-out-onnx", str(stray)]) == 2
    err = capsys.readouterr().err
    assert "--held-out-onnx" in err and "stray.onnx" in err and "no row" in err
    assert main([*base, "--onnx", str(stray)]) == 2
    assert "--onnx" in capsys.readouterr().err
    # Holding out all but one row leaves too few to fit on.
    assert main([*base, "--held-out-onnx", *paths[:2]]) == 2
    assert "need at least 2" in capsys.readouterr().err

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

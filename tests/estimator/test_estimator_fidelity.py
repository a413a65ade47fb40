"""Calibration fidelity: fusion, the pwconv kind, the well-posed fit and its physical limits.

The fit tests use a synthetic ground truth (latencies the analytical model itself produces from
known parameters): no timing, and the answer is known, so a fit that fails to recover it fails.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gen5nas.errors import SpecError
from gen5nas.estimator import analytical
from gen5nas.estimator.calibrate import Sample, calibrate, fit, predict
from gen5nas.estimator.fidelity import fidelity
from gen5nas.estimator.onnx_graph import analyze
from gen5nas.estimator.profiles import (
    HardwareProfile,
    ProfileRegistry,
    efficiency_of,
    load_profile_file,
    parse_profile,
    save_profile,
)
from gen5nas.estimator.synthetic import random_convnets


def _w(name: str, shape: list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.full(shape, 0.1, np.float32), name)


def residual_model() -> bytes:
    """X -> conv1 (1x1) -> relu -> conv2 (3x3) -> add(relu) -> relu2 -> Y, and a conv3 whose
    output feeds two nodes (relu3 and the output): relu3 cannot fold into it."""
    nodes = [
        helper.make_node("Conv", ["X", "W1"], ["C1"], name="conv1", kernel_shape=[1, 1]),
        helper.make_node("Relu", ["C1"], ["R1"], name="relu1"),
        helper.make_node("Conv", ["R1", "W2"], ["C2"], name="conv2", kernel_shape=[3, 3],
                         pads=[1] * 4),
        helper.make_node("Add", ["C2", "R1"], ["S"], name="add"),
        helper.make_node("Relu", ["S"], ["Y"], name="relu2"),
        helper.make_node("Conv", ["Y", "W3"], ["C3"], name="conv3", kernel_shape=[1, 1]),
        helper.make_node("Relu", ["C3"], ["Z"], name="relu3"),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "residual",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 8, 16, 16])],
        [
            helper.make_tensor_value_info("Z", TensorProto.FLOAT, [1, 8, 16, 16]),
            helper.make_tensor_value_info("C3", TensorProto.FLOAT, [1, 8, 16, 16]),
        ],
        [_w("W1", [8, 8, 1, 1]), _w("W2", [8, 8, 3, 3]), _w("W3", [8, 8, 1, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def cpu() -> HardwareProfile:
    return ProfileRegistry().get("cpu-ort")


def test_fusion_tags_and_costs() -> None:
    work = analyze(residual_model())
    by_name = {n.name: n for n in work.nodes}
    assert by_name["conv1"].kind == "pwconv" and by_name["conv2"].kind == "conv"
    assert by_name["relu1"].fusion == "activation"
    assert by_name["add"].fusion == "residual_add"
    assert by_name["relu2"].fusion == "activation"  # Conv -> Add -> Relu folds as a chain
    assert by_name["relu3"].fusion == ""  # C3 is also a graph output: it must be written
    assert by_name["conv1"].outputs == 8 * 16 * 16

    plain = dataclasses.replace(cpu(), fusion=())
    fused = dataclasses.replace(cpu(), fusion=("activation", "residual_add"))
    only_act = dataclasses.replace(cpu(), fusion=("activation",))
    a = {x.name: x for x in analytical.estimate(work, plain).layers}
    b = {x.name: x for x in analytical.estimate(work, fused).layers}
    c = {x.name: x for x in analytical.estimate(work, only_act).layers}
    for name in ("relu1", "add", "relu2"):
        assert a[name].latency_ms > 0 and a[name].bytes_read > 0
        assert b[name].latency_ms == 0 and b[name].bytes_read == b[name].dram_bytes == 0
        assert b[name].bound == "none" and b[name].energy_mj > 0  # its ALU ops still happen
    assert c["add"].latency_ms > 0 and c["relu1"].latency_ms == 0
    assert b["relu3"].latency_ms == a["relu3"].latency_ms > 0
    for name in ("conv1", "conv2", "conv3"):
        assert b[name].latency_ms == a[name].latency_ms
    total = analytical.estimate(work, fused).latency_ms
    assert total == pytest.approx(sum(x.latency_ms for x in b.values()))


def test_pwconv_falls_back_to_conv_efficiency() -> None:
    params = {"efficiency.conv": 0.4}
    assert efficiency_of(params, "pwconv") == 0.4
    assert efficiency_of({**params, "efficiency.pwconv": 0.9}, "pwconv") == 0.9
    # Shipped NPU profiles name no pwconv: a 1x1 conv costs what it did before the split.
    npu = ProfileRegistry().get("rcar-gen5-npu")
    work = analyze(residual_model())
    layer = next(x for x in analytical.estimate(work, npu).layers if x.name == "conv1")
    as_conv = dataclasses.replace(npu, params={**npu.params, "efficiency.pwconv": 1e-3})
    slower = next(x for x in analytical.estimate(work, as_conv).layers if x.name == "conv1")
    assert layer.compute_cycles * 1.5 < slower.compute_cycles  # pwconv is its own knob
    assert layer.compute_cycles == pytest.approx(
        (layer.macs + 0) / (npu.params["mac_units"] * npu.efficiency("conv"))
    )


def test_profile_fusion_and_optional_parameters_round_trip(tmp_path) -> None:
    profile = cpu()
    assert profile.fusion == ("activation", "residual_add")
    tuned = dataclasses.replace(profile, params={**profile.params, "output_overhead_macs": 6.0})
    path = save_profile(tuned, tmp_path / "cpu.yaml")
    back = load_profile_file(path)
    assert back.fusion == profile.fusion and back.params["output_overhead_macs"] == 6.0
    assert "output_overhead_macs" not in ProfileRegistry().get("edge-npu").params
    assert tuned.with_overrides({"output_overhead_macs": 2}).params["output_overhead_macs"] == 2
    doc = profile.to_yaml_dict()
    with pytest.raises(SpecError, match="fusion rules from") as err:
        parse_profile({**doc, "fusion": ["conv+bn"]}, "x.yaml")
    assert err.value.field == "x.yaml: fusion" or "fusion" in str(err.value)


def synthetic_truth(n: int, seed: int, truth: dict[str, float]) -> list[Sample]:
    """Models whose 'measured' latency is the analytical model's under ``truth`` params."""
    fusion = cpu().fusion
    params = {**cpu().params, **truth}
    out = []
    for i, data in enumerate(random_convnets(n, seed=seed, resolutions=(32, 48, 64, 96))):
        work = analyze(data)
        out.append(Sample(f"m{i}", work, analytical.total_latency_ms(work, params, fusion)))
    return out


TRUTH = {
    "efficiency.conv": 0.3,
    "efficiency.dwconv": 0.08,
    "efficiency.gemm": 0.2,
    "efficiency.pool": 0.3,
    "layer_overhead_us": 3.0,
    "output_overhead_macs": 6.0,
}


def test_fit_recovers_a_known_ground_truth() -> None:
    samples = synthetic_truth(28, seed=5, truth=TRUTH)
    train, held = samples[:20], samples[20:]
    report = calibrate(cpu(), train, held)
    before, after = report.held_out  # type: ignore[misc]
    assert before.mape > 50  # the shipped profile is far from this truth
    assert after.mape < 2.0 and after.within_10pct == 1.0 and after.kendall_tau > 0.95
    p = report.after.params
    # The knobs that carry most of the time come back (peak x efficiency is what is defined).
    for kind in ("conv", "dwconv"):
        rate = p["mac_units"] * efficiency_of(p, kind)
        assert rate == pytest.approx(cpu().params["mac_units"] * TRUTH[f"efficiency.{kind}"],
                                     rel=0.1)  # fmt: skip
    assert p["layer_overhead_us"] == pytest.approx(TRUTH["layer_overhead_us"], rel=0.15)
    assert all(0 < efficiency_of(p, k) <= 1 for k in ("conv", "pwconv", "dwconv", "gemm"))


def test_fit_shrugs_off_one_disturbed_measurement() -> None:
    samples = synthetic_truth(24, seed=6, truth=TRUTH)
    train, held = samples[:18], samples[18:]
    train[3] = dataclasses.replace(train[3], measured_ms=train[3].measured_ms * 3)  # a burst
    report = calibrate(cpu(), train, held)
    assert report.held_out is not None and report.held_out[1].mape < 5.0


def test_efficiencies_stay_utilisations() -> None:
    # Hardware 4x faster than the profile's peak: the fit raises the peak, not eff > 1.
    samples = synthetic_truth(16, seed=7, truth={"mac_units": 64.0, "efficiency.conv": 0.9,
                                                 "efficiency.dwconv": 0.5})  # fmt: skip
    calibrated, _, notes = fit(cpu(), samples)
    p = calibrated.params
    assert p["mac_units"] > cpu().params["mac_units"]
    assert any(n.startswith("mac_units raised") for n in notes)
    assert all(0 < efficiency_of(p, k) <= 1 + 1e-9 for k in ("conv", "pwconv", "dwconv", "gemm"))
    assert p["dram_efficiency"] <= 1
    assert fidelity(predict(calibrated, samples), [s.measured_ms for s in samples]).mape < 3
    assert calibrated.sources["mac_units"].startswith("calibrated")
    # A datasheet peak is kept: efficiencies stop at 1 and the report says so.
    kept, _, kept_notes = fit(cpu(), samples, keep_peaks=True)
    assert kept.params["mac_units"] == cpu().params["mac_units"]
    assert max(efficiency_of(kept.params, k) for k in ("conv", "dwconv")) <= 1.0
    assert any("stopped at 1" in n for n in kept_notes)

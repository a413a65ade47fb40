"""The analytical model against a hand calculation, plus unknown ops, overrides and profiles."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gen5nas.estimator import analytical
from gen5nas.estimator.engine import EstimatorEngine
from gen5nas.estimator.errors import InvalidRequest, NotFound
from gen5nas.estimator.onnx_graph import analyze
from gen5nas.estimator.profiles import (
    PARAMETERS,
    ProfileRegistry,
    load_profile_file,
    parse_profile,
    save_profile,
)
from gen5nas.estimator.synthetic import convnet


def _t(name: str, shape: list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.zeros(shape, np.float32), name)


def hand_model() -> bytes:
    """X[1,4,8,8] -> conv 3x3 4->16 (pad 1) -> depthwise 3x3 stride 2 -> Flatten -> Gemm 256->10."""
    nodes = [
        helper.make_node("Conv", ["X", "W1"], ["Y1"], name="conv", kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node(
            "Conv", ["Y1", "W2"], ["Y2"], name="dw", kernel_shape=[3, 3], pads=[1] * 4,
            strides=[2, 2], group=16,
        ),
        helper.make_node("Flatten", ["Y2"], ["F"], name="flatten", axis=1),
        helper.make_node("Gemm", ["F", "W3", "B3"], ["Z"], name="fc", transB=1),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "hand",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("Z", TensorProto.FLOAT, [1, 10])],
        [_t("W1", [16, 4, 3, 3]), _t("W2", [16, 1, 3, 3]), _t("W3", [10, 256]), _t("B3", [10])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


HAND_PROFILE = {
    "name": "hand",
    "parameters": {
        "clock_ghz": 1,  # 1 cycle = 1 ns
        "mac_units": 16,
        "vector_ops_per_cycle": 8,
        "bytes_per_element": 1,
        "sram_kib": 0.5,  # 512 B: Y1 (1024 B) spills to DRAM, Y2 and F (256 B) stay on chip
        "sram_bytes_per_cycle": 16,
        "dram_bandwidth_gbs": 4,
        "dram_efficiency": 0.5,  # 4 GB/s x 0.5 / 1 GHz = 2 bytes per cycle
        "layer_overhead_us": 0.1,  # 100 ns per layer, not for the Flatten view
        "e_mac_pj": 1,
        "e_vector_op_pj": 1,
        "e_sram_pj_per_byte": 2,
        "e_dram_pj_per_byte": 10,
        "static_power_w": 0.001,  # 1 mW: 1 pJ per ns
    },
    "efficiency": {"conv": 0.5, "dwconv": 0.25, "gemm": 1.0},
}


def test_hand_calculation() -> None:
    profile = parse_profile(HAND_PROFILE)
    est = analytical.estimate(analyze(hand_model()), profile)
    layers = {x.name: x for x in est.layers}
    conv, dw, flat, fc = layers["conv"], layers["dw"], layers["flatten"], layers["fc"]

    # conv: MACs = out 16*8*8 x (4*3*3) = 1024 x 36. DRAM: X 256 (input) + W1 576 + Y1 1024
    # (too big for SRAM) = 1856 B -> 928 cycles; compute 36864 / (16 x 0.5) = 4608 cycles.
    assert conv.op_kind == "conv" and conv.macs == 36864
    assert (conv.bytes_read, conv.bytes_written, conv.dram_bytes) == (832, 1024, 1856)
    assert conv.compute_cycles == pytest.approx(4608) and conv.memory_cycles == pytest.approx(928)
    assert conv.bound == "compute" and conv.latency_ms == pytest.approx(4.708e-3)
    # dw: MACs = 16*4*4 x 9 = 2304; compute 2304 / (16 x 0.25) = 576; DRAM Y1 1024 + W2 144 =
    # 1168 B -> 584 cycles (> 576: memory bound); on chip Y2 256 B -> 16 cycles.
    assert dw.op_kind == "dwconv" and dw.macs == 2304
    assert dw.dram_bytes == 1168 and dw.bytes_written == 256
    assert dw.compute_cycles == pytest.approx(576) and dw.memory_cycles == pytest.approx(584)
    assert dw.bound == "memory" and dw.latency_ms == pytest.approx(0.684e-3)
    # Flatten is a view: free.
    assert flat.op_kind == "view" and flat.latency_ms == 0 and flat.bound == "none"
    # fc: MACs = 10 x 256 = 2560 -> 160 cycles; DRAM W3 2560 + B3 10 + Z 10 (output) = 2580 B
    # -> 1290 cycles; F 256 B on chip.
    assert fc.op_kind == "gemm" and fc.macs == 2560 and fc.dram_bytes == 2580
    assert fc.compute_cycles == pytest.approx(160) and fc.memory_cycles == pytest.approx(1290)
    assert fc.bound == "memory" and fc.latency_ms == pytest.approx(1.39e-3)

    assert est.latency_ms == pytest.approx(4.708e-3 + 0.684e-3 + 1.39e-3)
    assert est.total_macs == 36864 + 2304 + 2560
    # Energy (pJ): conv 36864 + 1856x10 + static 4708 = 60132; dw 2304 + 1168x10 + 256x2 + 684
    # = 15180; fc 2560 + 2580x10 + 256x2 + 1390 = 30262. Total 105574 pJ = 1.05574e-4 mJ.
    assert conv.energy_mj == pytest.approx(60132e-9)
    assert dw.energy_mj == pytest.approx(15180e-9)
    assert fc.energy_mj == pytest.approx(30262e-9)
    assert est.energy_mj == pytest.approx(105574e-9)


def test_overrides_change_the_answer_and_bad_ones_are_refused() -> None:
    profile = parse_profile(HAND_PROFILE)
    work = analyze(hand_model())
    base = analytical.estimate(work, profile).latency_ms
    faster = analytical.estimate(work, profile.with_overrides({"clock_ghz": 2})).latency_ms
    assert faster is not None and base is not None and faster < base
    with pytest.raises(InvalidRequest, match="must be a positive number"):
        profile.with_overrides({"mac_units": 0})
    with pytest.raises(InvalidRequest, match="must be a positive number"):
        profile.with_overrides({"dram_bandwidth_gbs": -1})
    with pytest.raises(InvalidRequest, match="allowed: clock_ghz"):
        profile.with_overrides({"clock_mhz": 1000})


def test_unknown_op_is_costed_by_bytes_and_listed() -> None:
    nodes = [
        helper.make_node("Relu", ["X"], ["A"], name="relu"),
        helper.make_node("MyFancyOp", ["A"], ["B"], name="fancy", domain="com.example"),
        helper.make_node("Relu", ["B"], ["Y"], name="relu2"),
    ]
    graph = helper.make_graph(
        nodes,
        "odd",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 8, 4, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 8, 4, 4])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)],
    )
    est = EstimatorEngine().estimate(model.SerializeToString(), profile="edge-npu")
    fancy = next(x for x in est.layers if x.name == "fancy")
    assert fancy.unsupported and fancy.op_kind == "other"
    assert fancy.bytes_read == 128 and fancy.latency_ms > 0  # 8*4*4 INT8 bytes read
    assert est.unsupported_ops == ["MyFancyOp"]
    assert any("MyFancyOp" in n for n in est.notes)
    assert est.latency_ms is not None and est.latency_ms > 0


def test_unknown_op_passes_its_input_shape_downstream() -> None:
    # ONNX infers no shape for a custom op's output; assuming its input's shape keeps the conv
    # after it counted (it used to count 0 MACs and 0 bytes, and so did all that followed).
    nodes = [
        helper.make_node("MyFancyOp", ["X"], ["A"], name="fancy", domain="com.example"),
        helper.make_node("Conv", ["A", "W"], ["B"], name="conv", kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("Relu", ["B"], ["Y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "custom",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 8, 32, 32])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        [_t("W", [16, 8, 3, 3])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    work = analyze(model.SerializeToString())
    fancy, conv, relu = work.nodes
    assert fancy.kind == "other" and fancy.elems_written() == 8 * 32 * 32
    assert conv.kind == "conv" and conv.macs == 8 * 16 * 9 * 32 * 32
    assert conv.elems_read() == 8 * 32 * 32 + 16 * 8 * 9 and conv.elems_written() == 16 * 32 * 32
    assert relu.vector_ops == 16 * 32 * 32
    assert any("fancy" in n and "assumed its first input's shape [1, 8, 32, 32]" in n
               for n in work.notes), work.notes  # fmt: skip
    assert not any("unknown shape" in n for n in work.notes)
    est = EstimatorEngine().estimate(model.SerializeToString(), profile="edge-npu")
    assert any("MyFancyOp" in n and "assumed" in n for n in est.notes)  # reaches the response


def coverage_model() -> bytes:
    """X[1,8,16,16] -> grouped conv 3x3 8->16 (2 groups) -> HardSwish -> {MaxPool, AveragePool}
    2x2/2 -> Concat -> Resize x2 (nearest) -> Sigmoid -> Transpose NHWC -> Reshape [1,256,32]
    -> MatMul 32->10."""
    nodes = [
        helper.make_node("Conv", ["X", "W"], ["G"], name="gconv", kernel_shape=[3, 3],
                         pads=[1] * 4, group=2),
        helper.make_node("HardSwish", ["G"], ["H"], name="hswish"),
        helper.make_node("MaxPool", ["H"], ["P1"], name="maxpool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("AveragePool", ["H"], ["P2"], name="avgpool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Concat", ["P1", "P2"], ["C"], name="concat", axis=1),
        helper.make_node("Resize", ["C", "", "scales"], ["R"], name="resize", mode="nearest"),
        helper.make_node("Sigmoid", ["R"], ["S"], name="sigmoid"),
        helper.make_node("Transpose", ["S"], ["T"], name="transpose", perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["T", "shape"], ["M"], name="reshape"),
        helper.make_node("MatMul", ["M", "Wm"], ["Y"], name="matmul"),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "coverage",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 8, 16, 16])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 256, 10])],
        [
            _t("W", [16, 4, 3, 3]),
            numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
            numpy_helper.from_array(np.array([1, 256, 32], np.int64), "shape"),
            _t("Wm", [32, 10]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def test_op_coverage_kinds_and_counts() -> None:
    work = analyze(coverage_model())
    assert not work.unsupported_ops() and not work.notes
    kinds = {n.name: n.kind for n in work.nodes}
    assert kinds == {
        "gconv": "conv", "hswish": "elementwise", "maxpool": "pool", "avgpool": "pool",
        "concat": "data", "resize": "resize", "sigmoid": "elementwise", "transpose": "data",
        "reshape": "view", "matmul": "gemm",
    }  # fmt: skip
    fused = {n.name: n.fusion for n in work.nodes if n.fusion}
    assert fused == {"hswish": "activation"}  # G feeds only the HardSwish; R is no conv's
    # bytes_per_element 1 and no fusion rules: bytes = elements, nothing folded.
    est = analytical.estimate(work, parse_profile(HAND_PROFILE))
    x = {layer.name: layer for layer in est.layers}
    # Grouped, not depthwise: each output sums 4 input channels x 3x3.
    assert x["gconv"].macs == 16 * 16 * 16 * (4 * 9)
    assert x["gconv"].bytes_read == 8 * 16 * 16 + 16 * 4 * 9
    assert x["hswish"].vector_ops == 16 * 16 * 16 * 4  # HardSwish: 4 ops per element
    assert x["maxpool"].vector_ops == x["avgpool"].vector_ops == 16 * 8 * 8 * 4  # 2x2 window
    assert (x["concat"].bytes_read, x["concat"].bytes_written) == (2048, 2048)
    assert x["resize"].vector_ops == 32 * 16 * 16  # nearest: 1 op per output element
    assert x["resize"].bytes_read == 2048 + 4 and x["resize"].bytes_written == 8192  # + scales
    assert x["sigmoid"].vector_ops == 8192 * 4
    assert (x["transpose"].bytes_read, x["transpose"].bytes_written) == (8192, 8192)
    assert x["transpose"].macs == x["transpose"].vector_ops == 0
    assert x["reshape"].bytes_read == 0 and x["reshape"].latency_ms == 0  # a view is free
    # MatMul [1,256,32] x [32,10]: 2560 outputs x 32; reads M + Wm, writes Y.
    assert x["matmul"].macs == 256 * 10 * 32
    assert (x["matmul"].bytes_read, x["matmul"].bytes_written) == (8192 + 320, 2560)
    assert est.total_macs == x["gconv"].macs + x["matmul"].macs


def test_symbolic_input_needs_a_shape() -> None:
    model = onnx.load_from_string(convnet(resolution=16))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    data = model.SerializeToString()
    with pytest.raises(InvalidRequest, match="input_shapes"):
        analyze(data)
    one = analyze(data, {"input": [1, 3, 16, 16]}).total_macs
    two = analyze(data, {"input": [2, 3, 16, 16]}).total_macs
    assert two == 2 * one > 0


def test_shipped_profiles_document_every_number(tmp_path) -> None:
    registry = ProfileRegistry()
    assert {"rcar-gen5-npu", "edge-npu", "cpu-ort"} <= set(registry.names())
    for profile in registry.all():
        for key in PARAMETERS:
            assert profile.params[key] > 0
            assert profile.sources.get(key), f"{profile.name}.{key} has no source"
    assert registry.get("cpu-ort").default_backend == "onnxruntime"
    with pytest.raises(NotFound, match="rcar-gen5-npu"):
        registry.get("no-such-npu")
    # A saved profile reads back the same, and an extra directory can replace a shipped name.
    original = registry.get("edge-npu")
    save_profile(original, tmp_path / "edge.yaml", header="test copy")
    assert load_profile_file(tmp_path / "edge.yaml").params == original.params
    assert ProfileRegistry([tmp_path]).get("edge-npu").path == str(tmp_path / "edge.yaml")


def test_bigger_models_cost_more_on_every_profile() -> None:
    engine = EstimatorEngine()
    small = convnet(resolution=32, channels=(8, 16, 24))
    large = convnet(resolution=64, channels=(16, 32, 64))
    for name in ("rcar-gen5-npu", "edge-npu"):
        a, b = engine.estimate(small, profile=name), engine.estimate(large, profile=name)
        assert a.latency_ms < b.latency_ms and a.energy_mj < b.energy_mj  # type: ignore[operator]


def test_macs_match_the_supernets_own_count() -> None:
    import random

    pytest.importorskip("torch")
    from gen5nas.spec import load_space
    from gen5nas.supernet import Supernet, arch_onnx_bytes, count_macs, extract_subnet

    space = load_space("mobilenetv2_tiny")
    arch = space.sample(random.Random(1))
    subnet = extract_subnet(Supernet(space, 10).eval(), arch)
    expected = count_macs(subnet, (1, 3, *arch.resolution))
    work = analyze(arch_onnx_bytes(space, arch, num_classes=10))
    assert work.total_macs == expected
    assert not work.unsupported_ops()

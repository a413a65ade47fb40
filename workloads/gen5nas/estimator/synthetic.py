"""Small ONNX models built with onnx.helper (no torch): for tests, calibration and benchmarks
where torch is absent or too slow. ``convnet`` is a MobileNet-like stack of conv/dw-conv/pool."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _init(name: str, shape: Sequence[int], rng: np.random.Generator) -> onnx.TensorProto:
    return numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(np.float32), name)


def convnet(
    resolution: int = 32,
    channels: Sequence[int] = (16, 24, 32),
    kernel: int = 3,
    expand: int = 4,
    num_classes: int = 10,
    seed: int = 0,
) -> bytes:
    """stem conv -> per stage [1x1 expand, kxk depthwise (stride 2), 1x1 project] + ReLU ->
    global pool -> Gemm. A miniature MobileNetV2 without residuals."""
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    x, c = "input", 3

    def conv(inp: str, cin: int, cout: int, k: int, stride: int, group: int, act: bool) -> str:
        i = len(nodes)
        w = f"w{i}"
        inits.append(_init(w, [cout, cin // group, k, k], rng))
        inits.append(_init(f"b{i}", [cout], rng))
        out = f"t{i}"
        nodes.append(
            helper.make_node(
                "Conv",
                [inp, w, f"b{i}"],
                [out],
                name=f"conv{i}",
                kernel_shape=[k, k],
                pads=[k // 2] * 4,
                strides=[stride, stride],
                group=group,
            )
        )
        if act:
            nodes.append(helper.make_node("Relu", [out], [out + "r"], name=f"relu{i}"))
            out += "r"
        return out

    x = conv(x, c, channels[0], 3, 2, 1, True)
    c = channels[0]
    for cout in channels[1:]:
        mid = c * expand
        x = conv(x, c, mid, 1, 1, 1, True)
        x = conv(x, mid, mid, kernel, 2, mid, True)
        x = conv(x, mid, cout, 1, 1, 1, False)
        c = cout
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="pool"))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten", axis=1))
    inits.append(_init("fc_w", [num_classes, c], rng))
    inits.append(_init("fc_b", [num_classes], rng))
    nodes.append(
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc", transB=1)
    )
    graph = helper.make_graph(
        nodes,
        "convnet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, resolution, resolution])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, num_classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def random_convnets(
    n: int, seed: int = 0, resolutions: Sequence[int] = (32, 48, 64)
) -> list[bytes]:
    """``n`` different small convnets (widths, kernel, expansion, resolution drawn at random)."""
    rng = random.Random(seed)
    models = []
    for i in range(n):
        stages = rng.randint(2, 4)
        channels = [rng.choice([8, 16, 24])] + [rng.choice([16, 24, 32, 48]) for _ in range(stages)]
        models.append(
            convnet(
                resolution=rng.choice(list(resolutions)),
                channels=channels,
                kernel=rng.choice([3, 5]),
                expand=rng.choice([3, 4, 6]),
                seed=seed * 1000 + i,
            )
        )
    return models

"""The torch-free arch graph (``gen5nas.estimator.arch_graph``) against the torch exporter.

The builder replaces ``torch.onnx.export`` on the estimator's arch path, so the test that
matters: for max, min and random archs of both shipped spaces and every activation, the
analytical estimate of the built graph equals that of the exported static subnet, layer by
layer (name, op type, MACs, bytes, DRAM bytes, cycles), and in latency and energy.
"""

from __future__ import annotations

import math
import random
import subprocess
import sys
import textwrap
from collections import OrderedDict

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from gen5nas.errors import ArchError
from gen5nas.estimator import analytical
from gen5nas.estimator.arch_graph import (
    ACTIVATIONS,
    arch_graph_for,
    arch_model,
    arch_onnx,
    backbone_model,
)
from gen5nas.estimator.engine import EstimatorEngine
from gen5nas.estimator.onnx_graph import analyze, analyze_model
from gen5nas.estimator.profiles import ProfileRegistry
from gen5nas.spec import load_space
from gen5nas.supernet import Supernet, extract_subnet, onnx_bytes
from gen5nas.supernet.ops import make_activation

CLASSES = 10
PROFILES = ProfileRegistry()


def _trained_like_supernet(space_name: str, activation: str) -> Supernet:
    """A supernet whose BN state is random, as after training: no two folded weights are equal,
    so the exporter de-duplicates nothing (see arch_graph's docstring)."""
    torch.manual_seed(0)
    net = Supernet(load_space(space_name), CLASSES, activation=activation).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-1, 1)
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    return net


def _archs(space_name: str, n_random: int) -> list:
    space = load_space(space_name)
    rng = random.Random(f"{space_name}-{n_random}")
    return [space.max(), space.min(), *(space.sample(rng) for _ in range(n_random))]


def _layers(est) -> list[tuple]:  # type: ignore[no-untyped-def]
    return [
        (x.name, x.op_type, x.op_kind, x.macs, x.vector_ops, x.bytes_read, x.bytes_written,
         x.dram_bytes, x.bound)
        for x in est.layers
    ]  # fmt: skip


def _backbone_of(subnet: torch.nn.Module) -> torch.nn.Module:
    """The stem and stages of a static subnet, under their own names (so the exporter's node
    names are the subnet's)."""
    names = ["stem", *(f"stage{i}" for i in range(subnet.num_stages))]  # type: ignore[attr-defined]
    return torch.nn.Sequential(OrderedDict((n, getattr(subnet, n)) for n in names))


def _assert_same_estimates(
    space_name: str, activation: str, n_random: int, scope: str = "network"
) -> None:
    space = load_space(space_name)
    net = _trained_like_supernet(space_name, activation)
    for arch in _archs(space_name, n_random):
        subnet = extract_subnet(net, arch)
        module = subnet if scope == "network" else _backbone_of(subnet)
        exported = onnx_bytes(module, (1, 3, *arch.resolution))
        built = arch_graph_for(scope, space, arch, CLASSES, activation=activation, weights="none")
        torch_work, built_work = analyze(exported), analyze_model(built, "built")
        for profile in ("rcar-gen5-npu", "cpu-ort"):
            hw = PROFILES.get(profile)
            want = analytical.estimate(torch_work, hw)
            got = analytical.estimate(built_work, hw)
            assert _layers(got) == _layers(want), (arch.summary(), profile)
            assert [x.cycles for x in got.layers] == pytest.approx(
                [x.cycles for x in want.layers], rel=1e-12
            )
            assert got.latency_ms == pytest.approx(want.latency_ms, rel=1e-12)
            assert got.energy_mj == pytest.approx(want.energy_mj, rel=1e-12)
            assert (got.total_macs, got.total_bytes) == (want.total_macs, want.total_bytes)


def test_every_activation_name_has_a_torch_module() -> None:
    # One list of names (gen5nas.spec.plan): the torch modules are keyed by it.
    assert ACTIVATIONS == ("relu6", "relu", "hswish", "silu")
    modules = [type(make_activation(name)) for name in ACTIVATIONS]
    assert modules == [torch.nn.ReLU6, torch.nn.ReLU, torch.nn.Hardswish, torch.nn.SiLU]
    with pytest.raises(ValueError, match=r"unknown activation 'gelu'.*relu6"):
        make_activation("gelu")


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_tiny_space_estimates_equal_the_torch_exported_graph(activation: str) -> None:
    _assert_same_estimates("mobilenetv2_tiny", activation, n_random=10)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_default_space_estimates_equal_the_torch_exported_graph(activation: str) -> None:
    _assert_same_estimates("mobilenetv2_sample1", activation, n_random=10)  # ~10-20 s each


@pytest.mark.parametrize("space_name", ["mobilenetv2_tiny", "mobilenetv2_sample1"])
def test_backbone_estimates_equal_the_torch_exported_stem_and_stages(space_name: str) -> None:
    _assert_same_estimates(space_name, "hswish", n_random=3, scope="backbone")


def test_backbone_costs_less_than_the_network_and_runs() -> None:
    space = load_space("mobilenetv2_tiny")
    hw = PROFILES.get("rcar-gen5-npu")
    for arch in _archs("mobilenetv2_tiny", 3):
        network = analytical.estimate(analyze_model(arch_model(space, arch, CLASSES), ""), hw)
        backbone = analytical.estimate(analyze_model(backbone_model(space, arch), ""), hw)
        assert backbone.total_macs < network.total_macs
        assert backbone.latency_ms < network.latency_ms  # type: ignore[operator]
        assert backbone.energy_mj < network.energy_mj  # type: ignore[operator]
    arch = space.min().model_copy(update={"resolution": (32, 32)})
    data = arch_onnx(space, arch, batch_size=2, scope="backbone")
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": np.zeros((2, 3, 32, 32), np.float32)})
    stride = 2 * math.prod(space.arch_setting.stride)
    assert out.shape == (2, arch.stages[-1].num_out_channels, 32 // stride, 32 // stride)
    with pytest.raises(ValueError, match=r"no 'head' graph.*network.*backbone.*detector"):
        arch_graph_for("head", space, arch)


DET_SPACE = "mobilenetv2_tiny_det"
DET_CLASSES = 4


def test_the_detector_graph_is_the_whole_static_detector_and_costs_more() -> None:
    """The detector scope's graph: the task's static detector traced at the arch's resolution
    (raw head outputs, no NMS), costlier than its backbone."""
    from gen5nas.detection.levels import feature_levels, level_shapes

    space = load_space(DET_SPACE)
    hw = PROFILES.get("rcar-gen5-npu")
    for arch in (space.max(), space.min()):
        model = arch_graph_for("detector", space, arch, DET_CLASSES, task="detection")
        onnx.checker.check_model(model, full_check=True)
        locations = sum(h * w for h, w in level_shapes(feature_levels(space), arch.resolution))
        shapes = {
            o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output
        }
        assert shapes == {
            "cls_logits": [1, locations, DET_CLASSES],
            "box_regression": [1, locations, 4],
            "centerness": [1, locations, 1],
        }
        assert "NonMaxSuppression" not in {n.op_type for n in model.graph.node}
        # The only aliased weights are the head's, shared by its levels: no two others are
        # equal, as after training (an Identity per reuse otherwise, read as an activation).
        aliases = {n.output[0] for n in model.graph.node if n.op_type == "Identity"}
        readers = {n.name for n in model.graph.node if aliases & set(n.input)}
        assert all(name.startswith("/model/head/") for name in readers), readers
        detector = analytical.estimate(analyze_model(model, ""), hw)
        backbone = analytical.estimate(analyze_model(backbone_model(space, arch), ""), hw)
        assert not detector.unsupported_ops
        assert detector.total_macs > backbone.total_macs
        assert detector.latency_ms > backbone.latency_ms  # type: ignore[operator]
        assert detector.energy_mj > backbone.energy_mj  # type: ignore[operator]
    with pytest.raises(ValueError, match=r"task 'classification' has no detector graph"):
        arch_graph_for("detector", space, space.min(), DET_CLASSES)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_zero_weight_model_is_valid_and_runs(activation: str) -> None:
    space = load_space("mobilenetv2_tiny")
    arch = space.sample(random.Random(activation)).model_copy(update={"resolution": (32, 24)})
    data = arch_onnx(space, arch, num_classes=7, activation=activation, batch_size=2)
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model, full_check=True)  # includes strict shape inference
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": np.random.rand(2, 3, 32, 24).astype(np.float32)})
    assert out.shape == (2, 7)
    # Weightless (the analysis's input) and zero-weight models are the same graph to it.
    a = analyze(data)
    b = analyze_model(arch_model(space, arch, 7, activation=activation, batch_size=2,
                                 weights="none"), "")  # fmt: skip
    assert [(n.name, n.macs, n.tensors) for n in a.nodes] == [
        (n.name, n.macs, n.tensors) for n in b.nodes
    ]


def test_initializer_names_follow_the_state_dict() -> None:
    space = load_space("mobilenetv2_tiny")
    model = arch_model(space, space.max(), CLASSES, weights="none")
    names = [t.name for t in model.graph.initializer]
    assert len(names) == len(set(names))
    assert {"stem.0.weight", "stage3.1.layers.1.0.weight", "last.0.bias"} <= set(names)


def test_bad_input_is_named() -> None:
    space = load_space("mobilenetv2_tiny")
    arch = space.min()
    with pytest.raises(ArchError, match="resolution"):
        arch_model(space, arch.model_copy(update={"resolution": (24, 32)}))
    with pytest.raises(ValueError, match=r"gelu.*relu6"):
        arch_model(space, arch, activation="gelu")
    with pytest.raises(ValueError, match="num_classes"):
        arch_model(space, arch, num_classes=0)


def test_engine_arch_estimate_equals_the_estimate_of_its_onnx() -> None:
    engine = EstimatorEngine()
    space = load_space("mobilenetv2_tiny")
    arch = space.sample(random.Random(5))
    by_arch = engine.estimate(arch=("mobilenetv2_tiny", arch.to_yaml(), CLASSES))
    by_bytes = engine.estimate(engine.arch_onnx("mobilenetv2_tiny", arch.to_yaml(), CLASSES))
    assert by_arch.latency_ms == by_bytes.latency_ms
    assert by_arch.energy_mj == by_bytes.energy_mj
    assert _layers(by_arch) == _layers(by_bytes)
    # The measured backend runs the zero-weight model.
    measured = engine.estimate(
        arch=("mobilenetv2_tiny", arch.to_yaml(), CLASSES), profile="cpu-ort",
        backend="onnxruntime", with_layers=False,
    )  # fmt: skip
    assert measured.backend == "onnxruntime"
    assert measured.latency_ms is not None and measured.latency_ms > 0


def test_engine_costs_an_arch_without_importing_torch() -> None:
    code = textwrap.dedent(
        """
        import sys
        from gen5nas.estimator.engine import EstimatorEngine
        from gen5nas.spec import load_space
        arch = load_space("mobilenetv2_sample1").max().to_yaml()
        est = EstimatorEngine().estimate(arch=("mobilenetv2_sample1", arch, 0))
        assert est.latency_ms > 0 and est.total_macs > 0, est
        print("torch" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_arch_requests_carry_the_supernets_activation() -> None:
    """A supernet trained with hswish must be costed with hswish, not the default relu6."""
    from gen5nas.estimator.client import EstimatorClient, EstimatorRequestError
    from gen5nas.estimator.server import start_server

    space = load_space("mobilenetv2_tiny")
    arch = space.max()
    handle = start_server(0)
    try:
        client = EstimatorClient([{"host": "127.0.0.1", "ports": handle.ports}], "rcar-gen5-npu")
        try:
            relu6 = client.estimate_arch("mobilenetv2_tiny", arch, num_classes=10)
            hswish = client.estimate_arch(
                "mobilenetv2_tiny", arch, num_classes=10, activation="hswish"
            )
            direct = client.estimate(arch_onnx(space, arch, num_classes=10, activation="hswish"))
            assert hswish.energy_mj == pytest.approx(direct.energy_mj)
            assert hswish.latency_ms == pytest.approx(direct.latency_ms)
            assert (hswish.latency_ms, hswish.energy_mj) != (relu6.latency_ms, relu6.energy_mj)
            with pytest.raises(EstimatorRequestError, match="activation"):
                client.estimate_arch("mobilenetv2_tiny", arch, activation="tanh")
            # The cost scope travels the same way, and the answer names the scope it costed.
            backbone = client.estimate_arch("mobilenetv2_tiny", arch, 10, scope="backbone")
            direct = client.estimate(arch_onnx(space, arch, scope="backbone"))
            assert (backbone.latency_ms, backbone.energy_mj) == pytest.approx(
                (direct.latency_ms, direct.energy_mj)
            )
            assert backbone.latency_ms < relu6.latency_ms and backbone.total_macs < relu6.total_macs
            assert (backbone.costed_scope(), relu6.costed_scope()) == ("backbone", "network")
            with pytest.raises(EstimatorRequestError, match=r"arch.scope 'head'.*backbone"):
                client.estimate_arch("mobilenetv2_tiny", arch, scope="head")
            # The detector scope needs the task, which the request carries too.
            det_space, det_arch = load_space(DET_SPACE), load_space(DET_SPACE).min()
            detector = client.estimate_arch(
                DET_SPACE, det_arch, DET_CLASSES, scope="detector", task="detection"
            )
            direct = client.estimate(
                arch_onnx(det_space, det_arch, DET_CLASSES, scope="detector", task="detection")
            )
            assert (detector.latency_ms, detector.energy_mj) == pytest.approx(
                (direct.latency_ms, direct.energy_mj)
            )
            assert detector.costed_scope() == "detector"
            with pytest.raises(EstimatorRequestError, match=r"'detector'.*'classification'"):
                client.estimate_arch(DET_SPACE, det_arch, DET_CLASSES, scope="detector")
            with pytest.raises(EstimatorRequestError, match=r"arch.task 'segmentation'"):
                client.estimate_arch(DET_SPACE, det_arch, scope="detector", task="segmentation")
        finally:
            client.close()
    finally:
        handle.stop(0)

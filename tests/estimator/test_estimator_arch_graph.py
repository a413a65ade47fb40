"""The torch-free arch graph (``gen5nas.estimator.arch_graph``) against the torch exporter.

The builder replaces ``torch.onnx.export`` on the estimator's arch path, so the test that
matters: for max, min and random archs of both shipped spaces and every activation, the
analytical estimate of the built graph equals that of the exported static subnet, layer by
layer (name, op type, MACs, bytes, DRAM bytes, cycles), and in latency and energy.
"""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from gen5nas.errors import ArchError
from gen5nas.estimator import analytical
from gen5nas.estimator.arch_graph import ACTIVATIONS, arch_model, arch_onnx
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


def _assert_same_estimates(space_name: str, activation: str, n_random: int) -> None:
    space = load_space(space_name)
    net = _trained_like_supernet(space_name, activation)
    for arch in _archs(space_name, n_random):
        exported = onnx_bytes(extract_subnet(net, arch), (1, 3, *arch.resolution))
        built = arch_model(space, arch, CLASSES, activation=activation, weights="none")
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
        finally:
            client.close()
    finally:
        handle.stop(0)

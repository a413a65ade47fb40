"""ONNX export of extracted subnets: full checker, onnxruntime parity, atomic writes."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import Tensor, nn

from gen5nas.errors import ArchError
from gen5nas.spec import load_space
from gen5nas.supernet import Supernet, arch_onnx_bytes, export_onnx, extract_subnet, onnx_bytes

torch.set_num_threads(2)

TINY = load_space("mobilenetv2_tiny")


@pytest.fixture(scope="module")
def subnet() -> nn.Module:
    torch.manual_seed(0)
    net = Supernet(TINY, num_classes=10)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                assert m.running_mean is not None and m.running_var is not None
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    arch = TINY.sample(random.Random(4)).model_copy(update={"resolution": (32, 24)})
    return extract_subnet(net, arch).eval()


def run_ort(data: bytes | Path, x: Tensor) -> np.ndarray:
    source = str(data) if isinstance(data, Path) else data
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def test_export_checks_and_matches_pytorch(subnet: nn.Module, tmp_path: Path) -> None:
    path = export_onnx(subnet, (2, 3, 32, 24), tmp_path / "out" / "subnet.onnx", opset=17)
    assert path == tmp_path / "out" / "subnet.onnx" and path.is_file()
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) == 17
    x = torch.randn(2, 3, 32, 24)
    with torch.no_grad():
        expected = subnet(x).numpy()
    assert np.abs(run_ort(path, x) - expected).max() < 1e-4
    assert [p.name for p in tmp_path.joinpath("out").iterdir()] == ["subnet.onnx"]  # no temp left


def test_dynamic_batch(subnet: nn.Module) -> None:
    data = onnx_bytes(subnet, (1, 3, 32, 24), dynamic_batch=True)
    for batch in (1, 5):
        x = torch.randn(batch, 3, 32, 24)
        with torch.no_grad():
            expected = subnet(x).numpy()
        got = run_ort(data, x)
        assert got.shape == (batch, 10)
        assert np.abs(got - expected).max() < 1e-4


def test_fixed_batch_is_fixed(subnet: nn.Module) -> None:
    model = onnx.load_from_string(onnx_bytes(subnet, (2, 3, 32, 24)))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [2, 3, 32, 24]


def test_export_keeps_the_models_mode(subnet: nn.Module) -> None:
    subnet.train()
    try:
        onnx_bytes(subnet, (1, 3, 32, 24))
        assert subnet.training
    finally:
        subnet.eval()


class Broken(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        raise RuntimeError("this model cannot run")


def test_failed_export_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "broken.onnx"
    with pytest.raises(RuntimeError, match="cannot run"):
        export_onnx(Broken(), (1, 3, 8, 8), target)
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"previous result")
    with pytest.raises(RuntimeError):
        export_onnx(Broken(), (1, 3, 8, 8), target)
    assert target.read_bytes() == b"previous result"  # an existing result is not lost
    assert list(tmp_path.iterdir()) == [target]


def test_arch_onnx_bytes_builds_the_arch() -> None:
    arch = TINY.min().model_copy(update={"resolution": (32, 24)})
    data = arch_onnx_bytes(TINY, arch, num_classes=7)
    model = onnx.load_from_string(data)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 32, 24]
    out = run_ort(data, torch.randn(1, 3, 32, 24))
    assert out.shape == (1, 7)
    bigger = arch_onnx_bytes(TINY, TINY.max(), num_classes=7)
    assert len(bigger) > len(data)
    with pytest.raises(ArchError, match="resolution"):
        arch_onnx_bytes(TINY, arch.model_copy(update={"resolution": (24, 32)}))


def test_dynamo_exporter_also_works(subnet: nn.Module) -> None:
    # The fallback for a torch without the TorchScript exporter (opset >= 18 there).
    data = onnx_bytes(subnet, (1, 3, 32, 24), dynamic_batch=True, exporter="dynamo")
    x = torch.randn(3, 3, 32, 24)
    with torch.no_grad():
        expected = subnet(x).numpy()
    assert np.abs(run_ort(data, x) - expected).max() < 1e-4

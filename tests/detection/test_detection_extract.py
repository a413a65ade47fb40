"""extract_detector: the static detector computes what the supernet computes for that arch."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from gen5nas.detection.extract import extract_detector
from gen5nas.detection.model import DetectionSupernet
from gen5nas.detection.static import StaticDetector
from gen5nas.errors import ArchError
from gen5nas.spec import Arch, load_space
from gen5nas.supernet.ops import DYNAMIC_OPS

torch.set_num_threads(2)


@pytest.fixture(scope="module", params=("mobilenetv2_tiny_det", "mobilenetv2_tiny"))
def trained_net(request: pytest.FixtureRequest) -> DetectionSupernet:
    """BN and GN affine parameters randomised and BN running stats moved by train-mode passes
    of several subnets: BN is no identity, so a wrong slice would show."""
    torch.manual_seed(0)
    space = load_space(request.param)
    net = DetectionSupernet(space, num_classes=4)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    net.train()
    rng = random.Random(0)
    with torch.no_grad():
        for arch in [space.max(), space.min()] + [space.sample(rng) for _ in range(3)]:
            net.set_active(arch)
            net(torch.randn(6, 3, *space.max_resolution()) * 2 + 0.5)
    return net.eval()


def _archs(net: DetectionSupernet) -> list[Arch]:
    rng = random.Random(5)
    return [net.space.max(), net.space.min()] + [net.space.sample(rng) for _ in range(6)]


def test_static_detector_matches_the_supernet(trained_net: DetectionSupernet) -> None:
    net = trained_net
    x = torch.randn(3, 3, *net.space.max_resolution())
    for arch in _archs(net):
        static = extract_detector(net, arch)
        assert isinstance(static, StaticDetector) and not static.training
        net.set_active(arch)
        with torch.no_grad():
            expected, got = net(x), static(x)  # both resize to arch.resolution
            at_resolution = static(
                torch.nn.functional.interpolate(
                    x, size=arch.resolution, mode="bilinear", align_corners=False
                )
            )
        for name, e, g in zip(expected._fields, expected, got, strict=True):
            assert e.shape == g.shape, name
            assert float((e - g).abs().max()) <= 1e-5, (arch.summary(), name)
        # fed its own resolution (the export), the same tensors in that image's pixels
        assert float((at_resolution.cls_logits - expected.cls_logits).abs().max()) <= 1e-5
        points, _ = static.point_grid(arch.resolution)
        assert torch.equal(points, at_resolution.points)
    net.set_max()


def test_static_detector_has_no_elastic_code_and_shares_no_storage(
    trained_net: DetectionSupernet,
) -> None:
    net = trained_net
    arch = net.space.min()
    static = extract_detector(net, arch)
    assert not any(isinstance(m, DYNAMIC_OPS) for m in static.modules())
    net_ptrs = {t.data_ptr() for t in net.state_dict().values()}
    assert not any(t.data_ptr() in net_ptrs for t in static.state_dict().values())
    assert net.active_arch == net.space.max()  # the active arch is restored


def test_extract_refuses_an_arch_outside_the_space(trained_net: DetectionSupernet) -> None:
    bad = trained_net.space.max().model_copy(update={"resolution": (40, 40)})
    with pytest.raises(ArchError):
        extract_detector(trained_net, bad)
    assert trained_net.active_arch == trained_net.space.max()


def test_the_export_wrapper_of_a_static_detector_runs_in_onnxruntime(
    trained_net: DetectionSupernet,
) -> None:
    import warnings

    import onnxruntime as ort

    from gen5nas.supernet import onnx_bytes
    from gen5nas.tasks.detection import DETECTION

    arch = trained_net.space.min()
    model = DETECTION.export_wrapper(extract_detector(trained_net, arch)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape reads, constant here
        data = onnx_bytes(model, (2, 3, *arch.resolution))
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = torch.randn(2, 3, *arch.resolution)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = model(x)
    assert len(got) == 3
    for g, e in zip(got, expected, strict=True):
        assert float((torch.from_numpy(g) - e).abs().max()) <= 1e-4 * max(1.0, float(e.abs().max()))

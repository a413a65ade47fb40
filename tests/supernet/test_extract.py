"""Extracting a static subnet: numerical equivalence, independence, no elastic code left."""

from __future__ import annotations

import random
from typing import cast

import pytest
import torch
from torch import nn

from gen5nas.errors import ArchError
from gen5nas.spec import Arch, load_space
from gen5nas.supernet import StaticSubnet, Supernet, extract_subnet
from gen5nas.supernet.ops import DYNAMIC_OPS
from gen5nas.supernet.static import StaticMBConv

torch.set_num_threads(2)

TINY = load_space("mobilenetv2_tiny")
ALLOWED = (
    StaticSubnet,
    StaticMBConv,
    nn.Sequential,
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.Linear,
    nn.ReLU6,
    nn.AdaptiveAvgPool2d,
    nn.Flatten,
    nn.Dropout,
)


@pytest.fixture(scope="module")
def trained_net() -> Supernet:
    """A supernet whose BN parameters and running stats are far from their initial values:
    random affine parameters, then train-mode forwards of several subnets on random data."""
    torch.manual_seed(0)
    net = Supernet(TINY, num_classes=10)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    net.train()
    rng = random.Random(0)
    with torch.no_grad():
        for arch in [TINY.max(), TINY.min()] + [TINY.sample(rng) for _ in range(4)]:
            net.set_active(arch)
            net(torch.randn(8, 3, *arch.resolution) * 2 + 0.5)
    return net.eval()


def equivalence_archs() -> list[Arch]:
    rng = random.Random(1234)
    archs = [TINY.max(), TINY.min()] + [TINY.sample(rng) for _ in range(22)]
    archs.append(TINY.max().model_copy(update={"resolution": (32, 24)}))
    archs.append(TINY.min().model_copy(update={"resolution": (32, 24)}))
    return archs


def test_running_stats_are_non_trivial(trained_net: Supernet) -> None:
    bn = trained_net.last.bn.bn
    assert bn.running_mean is not None and bn.running_var is not None
    assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))


@pytest.mark.parametrize("index", range(len(equivalence_archs())))
def test_subnet_output_equals_supernet_output(trained_net: Supernet, index: int) -> None:
    arch = equivalence_archs()[index]
    trained_net.set_active(arch)
    subnet = extract_subnet(trained_net, arch).eval()
    x = torch.randn(3, 3, *arch.resolution)
    with torch.no_grad():
        expected = trained_net(x)
        got = subnet(x)
        assert (expected - got).abs().max() < 1e-5
        assert expected.abs().max() > 1e-3  # not trivially zero
        for a, b in zip(trained_net.forward_features(x), subnet.forward_features(x), strict=True):
            assert a.shape == b.shape and (a - b).abs().max() < 1e-5


def test_random_archs_cover_the_dimensions() -> None:
    archs = equivalence_archs()
    assert len(archs) >= 22
    assert {tuple(a.resolution) for a in archs} == {tuple(r) for r in TINY.input_resizer_cfg}
    assert {s.kernel_size for a in archs for s in a.stages[1:]} == {3, 5}
    assert {a.stages[3].num_blocks for a in archs} == {1, 2, 3}


def test_subnet_has_only_static_modules(trained_net: Supernet) -> None:
    subnet = extract_subnet(trained_net, TINY.sample(random.Random(7)))
    for module in subnet.modules():
        assert not isinstance(module, DYNAMIC_OPS)
        assert type(module) in ALLOWED, type(module)
    assert isinstance(subnet, nn.Sequential)


def test_subnet_structure_matches_the_arch(trained_net: Supernet) -> None:
    arch = TINY.min()
    subnet = extract_subnet(trained_net, arch)
    assert subnet.arch == arch
    stem = cast(nn.Sequential, subnet.stem)
    assert cast(nn.Conv2d, stem[0]).out_channels == arch.first_num_out_channels
    for i, stage in enumerate(arch.stages):
        blocks = subnet.stage(i)
        assert len(blocks) == stage.num_blocks
        depthwise = [m for m in blocks.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
        assert {m.kernel_size for m in depthwise} == {(stage.kernel_size,) * 2}
    assert cast(nn.Linear, subnet.classifier).in_features == arch.last_num_out_channels
    # Residual: stage 0 of the min arch maps 8 -> 8 at stride 1.
    assert cast(StaticMBConv, subnet.stage(0)[0]).residual
    assert not cast(StaticMBConv, subnet.stage(1)[0]).residual  # stride 2


def test_subnet_is_independent_of_the_supernet(trained_net: Supernet) -> None:
    arch = TINY.sample(random.Random(11))
    subnet = extract_subnet(trained_net, arch).eval()
    x = torch.randn(2, 3, *arch.resolution)
    with torch.no_grad():
        before = subnet(x).clone()
        super_ptrs = {t.data_ptr() for t in trained_net.state_dict().values()}
        assert not super_ptrs & {t.data_ptr() for t in subnet.state_dict().values()}
        saved = {k: v.clone() for k, v in trained_net.state_dict().items()}
        try:
            for p in trained_net.parameters():
                p.add_(1.0)
            for b in trained_net.buffers():
                b.add_(1)
            assert torch.equal(subnet(x), before)
        finally:
            trained_net.load_state_dict(saved)


def test_extract_refuses_archs_outside_the_space(trained_net: Supernet) -> None:
    trained_net.set_min()
    bad_stage = TINY.max().stages[4].model_copy(update={"kernel_size": 4})
    bad = TINY.max().model_copy(
        update={"stages": [*TINY.max().stages[:4], bad_stage, *TINY.max().stages[5:]]}
    )
    with pytest.raises(ArchError, match=r"stages\[4\]\.kernel_size"):
        extract_subnet(trained_net, bad)
    wrong_res = TINY.max().model_copy(update={"resolution": (28, 28)})
    with pytest.raises(ArchError, match="resolution"):
        extract_subnet(trained_net, wrong_res)
    assert trained_net.active_arch == TINY.min()


def test_extract_restores_the_active_arch_and_mode(trained_net: Supernet) -> None:
    trained_net.set_min()
    subnet = extract_subnet(trained_net, TINY.max())
    assert trained_net.active_arch == TINY.min()
    assert not subnet.training  # the supernet is in eval mode
    trained_net.train()
    try:
        assert extract_subnet(trained_net, TINY.min()).training
    finally:
        trained_net.eval()

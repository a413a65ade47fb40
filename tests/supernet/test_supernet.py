"""The elastic supernet: dynamic ops, active-arch selection, BN slicing, resize, dropout."""

from __future__ import annotations

import copy
import random

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gen5nas.errors import ArchError
from gen5nas.spec import Arch, load_space
from gen5nas.spec.plan import make_divisible
from gen5nas.supernet import Supernet, count_macs, count_params, extract_subnet
from gen5nas.supernet.ops import (
    DynamicBatchNorm2d,
    DynamicConv2d,
    DynamicLinear,
    l1_channel_order,
)

torch.set_num_threads(2)

TINY = load_space("mobilenetv2_tiny")


def randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial affine parameters and running stats, so that slicing mistakes show."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                assert m.running_mean is not None and m.running_var is not None
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)


def mean(bn: nn.BatchNorm2d) -> Tensor:
    assert bn.running_mean is not None
    return bn.running_mean


def var(bn: nn.BatchNorm2d) -> Tensor:
    assert bn.running_var is not None
    return bn.running_var


@pytest.fixture()
def net() -> Supernet:
    torch.manual_seed(0)
    model = Supernet(TINY, num_classes=10)
    randomise_bn(model)
    return model.eval()


def with_stage(arch: Arch, i: int, **changes: object) -> Arch:
    stages = list(arch.stages)
    stages[i] = stages[i].model_copy(update=changes)
    return arch.model_copy(update={"stages": stages})


# ---- the forward pass --------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["max", "min", "nonsquare"])
def test_forward_shapes_follow_the_active_arch(net: Supernet, which: str) -> None:
    arch = {"max": TINY.max(), "min": TINY.min()}.get(which)
    if arch is None:
        arch = TINY.max().model_copy(update={"resolution": (32, 24)})
    net.set_active(arch)
    x = torch.randn(2, 3, *arch.resolution)
    with torch.no_grad():
        features = net.forward_features(x)
        logits = net(x)
    assert logits.shape == (2, 10)
    assert len(features) == TINY.arch_setting.num_stages
    h, w = arch.resolution[0] // 2, arch.resolution[1] // 2  # the stem's stride
    for feat, stage, stride in zip(features, arch.stages, TINY.arch_setting.stride, strict=True):
        h, w = -(-h // stride), -(-w // stride)
        assert feat.shape == (2, stage.num_out_channels, h, w)


def test_forward_resizes_input_to_the_active_resolution(net: Supernet) -> None:
    arch = TINY.min()  # 24x24
    net.set_active(arch)
    x = torch.randn(2, 3, 40, 30)
    resized = F.interpolate(x, size=(24, 24), mode="bilinear", align_corners=False)
    with torch.no_grad():
        assert torch.equal(net(x), net(resized))
        assert not torch.equal(net(x), net(x[..., :24, :24]))


@pytest.mark.parametrize("activation", ["relu6", "relu", "hswish", "silu"])
def test_activations(activation: str) -> None:
    model = Supernet(TINY, num_classes=3, activation=activation).eval()
    kinds = {type(m).__name__ for m in extract_subnet(model, TINY.min()).modules()}
    expected = {"relu6": "ReLU6", "relu": "ReLU", "hswish": "Hardswish", "silu": "SiLU"}
    assert expected[activation] in kinds
    assert model(torch.randn(1, 3, 24, 24)).shape == (1, 3)


def test_unknown_activation_is_refused() -> None:
    with pytest.raises(ValueError, match="relu6"):
        Supernet(TINY, num_classes=3, activation="gelu")


# ---- choosing the subnet -----------------------------------------------------------------------
def test_set_max_min_and_active_arch(net: Supernet) -> None:
    assert net.active_arch == TINY.max()  # the default
    net.set_min()
    assert net.active_arch == TINY.min()
    net.set_max()
    assert net.active_arch == TINY.max()
    arch = TINY.sample(random.Random(3))
    net.set_active(arch)
    assert net.active_arch == arch


BAD_ARCHS = {
    "kernel": (lambda a: with_stage(a, 2, kernel_size=7), "stages[2].kernel_size"),
    "depth": (
        lambda a: with_stage(a, 3, num_blocks=4, expand_ratio=6),
        "stages[3].num_blocks",
    ),
    "expand ratio vs CompOFA table": (
        lambda a: with_stage(a, 3, expand_ratio=4),  # max depth 3 requires ratio 6
        "stages[3].expand_ratio",
    ),
    "resolution": (lambda a: a.model_copy(update={"resolution": (24, 32)}), "resolution"),
    "width": (lambda a: with_stage(a, 1, num_out_channels=12), "stages[1].num_out_channels"),
    "first channels": (
        lambda a: a.model_copy(update={"first_num_out_channels": 24}),
        "first_num_out_channels",
    ),
    "stage count": (lambda a: a.model_copy(update={"stages": a.stages[:-1]}), "stages"),
}


@pytest.mark.parametrize("case", sorted(BAD_ARCHS))
def test_set_active_refuses_archs_outside_the_space(net: Supernet, case: str) -> None:
    make, dimension = BAD_ARCHS[case]
    net.set_min()
    with pytest.raises(ArchError) as info:
        net.set_active(make(TINY.max()))
    assert info.value.dimension == dimension
    assert str(info.value).startswith(dimension + ":")
    assert net.active_arch == TINY.min()  # unchanged


# ---- dynamic ops -------------------------------------------------------------------------------
def test_dynamic_bn_train_updates_only_the_active_slice() -> None:
    torch.manual_seed(0)
    dyn = DynamicBatchNorm2d(16)
    randomise_bn(dyn)
    before_mean = mean(dyn.bn).clone()
    before_var = var(dyn.bn).clone()
    reference = nn.BatchNorm2d(6)
    assert reference.running_mean is not None and reference.running_var is not None
    with torch.no_grad():
        reference.weight.copy_(dyn.bn.weight[:6])
        reference.bias.copy_(dyn.bn.bias[:6])
        reference.running_mean.copy_(before_mean[:6])
        reference.running_var.copy_(before_var[:6])
    x = torch.randn(4, 6, 5, 5) * 3 + 1
    dyn.train()
    reference.train()
    out = dyn(x)
    assert torch.allclose(out, reference(x), atol=1e-6)
    assert torch.allclose(mean(dyn.bn)[:6], reference.running_mean, atol=1e-6)
    assert torch.allclose(var(dyn.bn)[:6], reference.running_var, atol=1e-6)
    assert not torch.allclose(mean(dyn.bn)[:6], before_mean[:6])
    assert torch.equal(mean(dyn.bn)[6:], before_mean[6:])
    assert torch.equal(var(dyn.bn)[6:], before_var[6:])
    assert dyn.bn.num_batches_tracked is not None
    assert int(dyn.bn.num_batches_tracked) == 1


def test_dynamic_bn_cumulative_average_for_recalibration() -> None:
    # momentum=None (BN recalibration): the running mean is the plain average of batch means.
    dyn = DynamicBatchNorm2d(8, momentum=None).train()
    batches = [torch.randn(4, 5, 3, 3) + i for i in range(3)]
    for batch in batches:
        dyn(batch)
    expected = torch.stack([b.mean(dim=(0, 2, 3)) for b in batches]).mean(0)
    assert torch.allclose(mean(dyn.bn)[:5], expected, atol=1e-5)
    assert torch.equal(mean(dyn.bn)[5:], torch.zeros(3))


def test_supernet_train_step_touches_only_active_slices(net: Supernet) -> None:
    net.set_min()
    net.train()
    last_bn = net.last.bn.bn
    active = TINY.min().last_num_out_channels
    before = mean(last_bn).clone()
    net.zero_grad()
    net(torch.randn(4, 3, 24, 24)).square().mean().backward()
    assert not torch.equal(mean(last_bn)[:active], before[:active])
    assert torch.equal(mean(last_bn)[active:], before[active:])
    # Gradients reach only the active slice of a weight.
    grad = net.last.conv.conv.weight.grad
    assert grad is not None
    first_in = TINY.min().stages[-1].num_out_channels
    assert grad[:active, :first_in].abs().sum() > 0
    assert grad[active:].abs().sum() == 0 and grad[:, first_in:].abs().sum() == 0
    unused_block = net.blocks(3)[2]  # depth 1 in the min arch
    assert all(p.grad is None for p in unused_block.parameters())


def test_dynamic_conv_centre_crops_the_kernel() -> None:
    conv = DynamicConv2d(4, 6, 5)
    conv.set_active(out_channels=3, kernel_size=3)
    x = torch.randn(1, 2, 7, 7)
    expected = F.conv2d(x, conv.conv.weight[:3, :2, 1:4, 1:4], padding=1)
    with torch.no_grad():
        assert torch.allclose(conv(x), expected)
        static = conv.to_static(2)
    assert static.kernel_size == (3, 3) and static.in_channels == 2 and static.out_channels == 3
    assert torch.allclose(static(x), expected)
    with pytest.raises(ValueError, match="odd"):
        conv.set_active(kernel_size=4)
    with pytest.raises(ValueError, match="out_channels"):
        conv.set_active(out_channels=7)


def test_depthwise_conv_uses_one_group_per_active_channel() -> None:
    conv = DynamicConv2d(8, 8, 3, stride=2, depthwise=True)
    x = torch.randn(1, 5, 6, 6)
    expected = F.conv2d(x, conv.conv.weight[:5], stride=2, padding=1, groups=5)
    assert torch.allclose(conv(x), expected)
    static = conv.to_static(5)
    assert static.groups == 5 and static.out_channels == 5
    assert torch.allclose(static(x), expected)


def test_eval_weight_cache_follows_weight_changes(net: Supernet) -> None:
    arch = TINY.sample(random.Random(1))
    net.set_active(arch)
    x = torch.randn(2, 3, *arch.resolution)
    with torch.no_grad():
        first = net(x)
        for p in net.parameters():
            p.mul_(1.5)  # in place, as an optimizer step
        second = net(x)
        assert not torch.allclose(first, second)
        assert torch.allclose(second, extract_subnet(net, arch).eval()(x), atol=1e-5)
        state = {k: v.clone() for k, v in net.state_dict().items()}
        for p in net.parameters():
            p.mul_(0.5)
        net.load_state_dict(state)
        assert torch.allclose(net(x), second, atol=1e-6)


def test_eval_cache_survives_dtype_change_and_copies(net: Supernet) -> None:
    arch = TINY.sample(random.Random(2))
    net.set_active(arch)
    x = torch.randn(2, 3, *arch.resolution)
    with torch.no_grad():
        net(x)  # fills the caches in float32
        twin = copy.deepcopy(net)
        net.double()
        out = net(x.double())
        assert out.dtype == torch.float64
        assert torch.allclose(out, extract_subnet(net, arch).eval()(x.double()), atol=1e-9)
        for p in twin.parameters():
            p.mul_(2.0)
        assert torch.equal(net(x.double()), out)  # the copy shares no weights nor caches
        assert not torch.allclose(twin(x), out.float())


def test_eval_cache_from_inference_mode_is_not_reused_under_autograd(net: Supernet) -> None:
    net.set_min()
    for p in net.parameters():
        p.requires_grad_(False)  # a frozen supernet: the cache is used with autograd on, too
    x = torch.randn(2, 3, 24, 24)
    with torch.inference_mode():
        expected = net(x).clone()
    x.requires_grad_(True)
    out = net(x)
    out.sum().backward()  # would fail on inference tensors saved for backward
    assert x.grad is not None and torch.allclose(out, expected)


def test_dynamic_linear_slices_input_features() -> None:
    lin = DynamicLinear(10, 4)
    x = torch.randn(3, 6)
    expected = F.linear(x, lin.linear.weight[:, :6], lin.linear.bias)
    assert torch.allclose(lin(x), expected)
    assert torch.allclose(lin.to_static(6)(x), expected)


# ---- construction details ----------------------------------------------------------------------
def test_always_residual_blocks_start_as_identity() -> None:
    model = Supernet(TINY, num_classes=10)
    for i in range(len(model.stages)):
        stage = model.blocks(i)
        assert stage[0].project.bn.bn.weight.abs().sum() > 0
        for block in stage[1:]:
            assert torch.count_nonzero(block.project.bn.bn.weight) == 0


def test_expand_conv_exists_iff_max_ratio_above_one(net: Supernet) -> None:
    assert net.blocks(0)[0].expand is None  # table {1: 1}
    assert all(block.expand is not None for i in range(1, 7) for block in net.blocks(i))
    # Mid width = make_divisible(active_in * ratio, 8).
    arch = TINY.min()
    net.set_active(arch)
    block = net.blocks(1)[0]
    assert block.expand is not None
    want = make_divisible(arch.stages[0].num_out_channels * arch.stages[1].expand_ratio)
    assert block.expand.conv.active_out == want


def test_dropout_can_be_switched_off() -> None:
    torch.manual_seed(0)
    model = Supernet(TINY, num_classes=10, dropout=0.5).train()
    randomise_bn(model)
    x = torch.randn(4, 3, 32, 32)
    assert not torch.equal(model(x), model(x))  # dropout on: two draws differ
    model.dropout_active = False
    assert torch.equal(model(x), model(x))


def test_param_and_mac_counts(net: Supernet) -> None:
    assert count_params(net) == sum(p.numel() for p in net.parameters())
    arch = TINY.sample(random.Random(5))
    net.set_active(arch)
    subnet = extract_subnet(net, arch)
    assert net.num_active_params() == count_params(subnet) < count_params(net)
    shape = (4, 3, *arch.resolution)
    assert count_macs(net, shape) == count_macs(subnet, shape) > 0
    # A hand-counted case: 3x3 conv 3->8 on 8x8 "same", then a 4->2 linear.
    conv = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)
    )
    assert count_macs(conv, (1, 3, 8, 8)) == 8 * 8 * 8 * 3 * 9 + 8 * 2


def test_default_space_max_and_min() -> None:
    space = load_space()
    torch.manual_seed(0)
    model = Supernet(space, num_classes=1000)
    # Freshly initialised, the zero last-BN gammas and the 0.01 classifier make the logits ~1e-9:
    # any subnet would pass the 1e-5 comparison. Random BN makes the output depend on the slicing.
    randomise_bn(model)
    model.eval()
    for arch in (space.max(), space.min()):
        model.set_active(arch)
        x = torch.randn(1, 3, *arch.resolution)
        with torch.no_grad():
            out = model(x)
            assert out.shape == (1, 1000)
            assert out.abs().max() > 1e-3
            assert (out - extract_subnet(model, arch).eval()(x)).abs().max() < 1e-5


def test_l1_channel_order() -> None:
    weight = torch.zeros(4, 2, 3, 3)
    for channel, scale in enumerate([0.5, 3.0, -2.0, 1.0]):
        weight[channel] = scale
    assert l1_channel_order(weight).tolist() == [1, 2, 3, 0]

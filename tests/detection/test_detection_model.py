"""The detection supernet: feature levels from the plan, the neck's widths for every arch, the
raw output's shapes and point grid."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from gen5nas.detection.levels import FeatureLevel, feature_levels, level_shapes
from gen5nas.detection.model import DetectionSupernet, DetectorRaw
from gen5nas.spec import Arch, SearchSpace, load_space
from gen5nas.spec.plan import network_plan

torch.set_num_threads(2)

SPACES = ("mobilenetv2_tiny_det", "mobilenetv2_tiny")


def archs(space: SearchSpace, n_random: int = 4) -> list[Arch]:
    rng = random.Random(7)
    return [space.max(), space.min()] + [space.sample(rng) for _ in range(n_random)]


@pytest.fixture(scope="module", params=SPACES)
def net(request: pytest.FixtureRequest) -> DetectionSupernet:
    torch.manual_seed(0)
    return DetectionSupernet(load_space(request.param), num_classes=5).eval()


def test_levels_are_the_last_stage_of_each_of_the_last_three_strides() -> None:
    # strides [1, 2, 2, 2, 1, 2, 1] after the stem's 2: cumulative 2 4 8 16 16 32 32
    assert feature_levels(load_space("mobilenetv2_tiny")) == (
        FeatureLevel(2, 8),
        FeatureLevel(4, 16),
        FeatureLevel(6, 32),
    )


def test_a_space_with_fewer_distinct_strides_gets_fewer_levels() -> None:
    tiny = load_space("mobilenetv2_tiny_det")
    setting = tiny.arch_setting.model_copy(update={"stride": [1, 1, 1, 1, 1, 2, 1]})
    space = tiny.model_copy(update={"arch_setting": setting})
    assert feature_levels(space) == (FeatureLevel(4, 2), FeatureLevel(6, 4))
    net = DetectionSupernet(space, num_classes=2).eval()
    raw = net(torch.randn(1, 3, 64, 64))  # the max subnet, at 64 px: 32x32 and 16x16 maps
    assert raw.cls_logits.shape == (1, 32 * 32 + 16 * 16, 2)


def test_the_neck_receives_each_arch_s_stage_widths(net: DetectionSupernet) -> None:
    seen: list[int] = []
    hooks = [
        lateral.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[1]))
        for lateral in net.neck.lateral
    ]
    try:
        for arch in archs(net.space):
            seen.clear()
            net.set_active(arch)
            with torch.no_grad():
                net(torch.randn(2, 3, *arch.resolution))
            plan = network_plan(net.space, arch)
            expected = [plan.stages[lv.stage][-1].out_channels for lv in net.levels]
            assert seen == expected == net.level_widths(arch), arch.summary()
    finally:
        for hook in hooks:
            hook.remove()
        net.set_max()


def test_raw_output_shapes_and_point_grid(net: DetectionSupernet) -> None:
    hw = net.space.max_resolution()
    for arch in archs(net.space, n_random=2):
        net.set_active(arch)
        with torch.no_grad():
            raw = net(torch.randn(3, 3, *hw))
        assert isinstance(raw, DetectorRaw)
        a = sum(h * w for h, w in level_shapes(net.levels, arch.resolution))
        assert raw.cls_logits.shape == (3, a, 5)
        assert raw.box_regression.shape == (3, a, 4) and raw.centerness.shape == (3, a, 1)
        assert bool((raw.box_regression > 0).all())
        points, strides = net.point_grid(hw)
        assert torch.equal(points, raw.points) and torch.equal(strides, raw.strides)
        # points are in the fed image's pixels, whatever the subnet's resolution
        assert float(points.min()) > 0 and float(points[:, 0].max()) < hw[1]
        assert float(points[:, 1].max()) < hw[0]
    net.set_max()


def test_same_output_in_train_and_eval_mode_and_prior_bias() -> None:
    torch.manual_seed(0)
    net = DetectionSupernet(load_space("mobilenetv2_tiny_det"), num_classes=3)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        train_raw = net.train()(x)
    assert isinstance(train_raw, DetectorRaw)
    # the focal-loss prior: every class starts near p = 0.01
    assert abs(float(torch.sigmoid(train_raw.cls_logits).mean()) - 0.01) < 0.005


def test_num_active_params_counts_backbone_neck_and_head(net: DetectionSupernet) -> None:
    net.set_min()
    small = net.num_active_params()
    net.set_max()
    large = net.num_active_params()
    fixed = sum(p.numel() for m in (net.head,) for p in m.parameters())
    assert fixed < small < large <= sum(p.numel() for p in net.parameters())
    assert not any(isinstance(m, nn.Linear) for m in net.modules())

"""Random-subnet sampling of the sandwich rule: uniform (BigNAS), stratified by size, and wide."""

from __future__ import annotations

import random

import pytest

from gen5nas.spec.spaces import load_space
from gen5nas.spec.training import SupernetTrainingSpec
from gen5nas.train.arch_sampling import arch_sampler, stratified, stratified_arch, uniform, wide
from gen5nas.train.sandwich import SandwichStep

SPACE = load_space("mobilenetv2_tiny")


def _spec(schedule: dict) -> SupernetTrainingSpec:
    return SupernetTrainingSpec.model_validate(
        {
            "searchSpace": {"name": "mobilenetv2_tiny"},
            "dataset": {"kind": "scenes"},
            "schedule": schedule,
        }
    )


def _scale(arch) -> int:  # a size proxy: total channels x blocks
    return sum(s.num_out_channels * s.num_blocks for s in arch.stages)


def test_levels_zero_and_one_without_jitter_are_the_extremes() -> None:
    rng = random.Random(0)
    assert stratified_arch(SPACE, 0.0, rng, jitter=0.0) == SPACE.min()
    assert stratified_arch(SPACE, 1.0, rng, jitter=0.0) == SPACE.max()


def test_stratified_spreads_a_step_over_the_size_range() -> None:
    rng = random.Random(1)
    small, large = [], []
    for _ in range(200):
        a, b = stratified(SPACE, rng, 2)
        assert SPACE.contains(a) and SPACE.contains(b)
        small.append(_scale(a))
        large.append(_scale(b))
    assert sum(large) / len(large) > sum(small) / len(small) + 20
    # and the spread is wider than uniform sampling's, which concentrates on the middle
    uni = [_scale(a) for a in uniform(SPACE, random.Random(1), 400)]
    both = small + large
    spread = max(both) - min(both)
    assert spread >= max(uni) - min(uni)


def test_samplers_are_functions_of_the_rng() -> None:
    for name in ("uniform", "stratified", "wide"):
        sampler = arch_sampler(name)
        assert sampler(SPACE, random.Random(5), 3) == sampler(SPACE, random.Random(5), 3)
    assert uniform(SPACE, random.Random(5), 2) == [
        SPACE.sample(r) for r in [random.Random(5)] for _ in range(2)
    ]


def test_wide_draws_each_width_by_its_rank_and_the_rest_uniformly() -> None:
    from collections import Counter

    from gen5nas.spec.space import range_values

    archs = wide(SPACE, random.Random(2), 3000)
    assert all(SPACE.contains(a) for a in archs)
    setting = SPACE.arch_setting
    for i in range(setting.num_stages):
        values = range_values(setting.num_out_channels[i])
        if len(values) < 2:
            continue
        widths = Counter(a.stages[i].num_out_channels for a in archs)
        # the widest drawn about n times as often as the narrowest (uniform: as often)
        assert widths[values[-1]] > 0.7 * len(values) * widths[values[0]]
        depths = Counter(a.stages[i].num_blocks for a in archs)
        assert max(depths.values()) < 1.3 * min(depths.values())  # depth stays uniform
    uni = uniform(SPACE, random.Random(2), 3000)
    assert sum(map(_scale, archs)) > sum(map(_scale, uni))


def test_sandwich_uses_the_chosen_sampler() -> None:
    step = SandwichStep(SPACE, num_random=2, sampler=stratified, seed=3)
    names = [name for name, _ in step.archs_for(0, 7)]
    assert names == ["max", "min", "random0", "random1"]
    assert step.archs_for(0, 7) == step.archs_for(0, 7)  # same on every rank and on resume
    uni = SandwichStep(SPACE, num_random=2, seed=3).archs_for(0, 7)
    assert uni != step.archs_for(0, 7)


def test_spec_field_and_unknown_name() -> None:
    spec = _spec({"archSampling": "stratified"})
    assert spec.schedule.arch_sampling.value == "stratified"
    with pytest.raises(ValueError, match="allowed"):
        arch_sampler("attentive")


def _batch(n: int = 6, seed: int = 0):
    import torch

    from gen5nas.data import Batch

    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g), 0)


@pytest.mark.parametrize("choice", ["worst", "best"])
def test_candidates_train_the_arch_with_the_named_minibatch_loss(choice: str) -> None:
    import torch

    from gen5nas.supernet import Supernet
    from gen5nas.train.sandwich import StepContext

    torch.manual_seed(0)
    net = Supernet(SPACE, num_classes=10, dropout=0.0)
    batch = _batch()
    step = SandwichStep(SPACE, num_random=2, seed=2, candidates=3, choice=choice)
    drawn = step.draw(0, 5)
    assert [len(c) for _, c in drawn] == [1, 1, 3, 3]
    assert step.draw(0, 5) == drawn  # a function of (seed, epoch, iteration), as before
    out = step(net, batch, StepContext(epoch=0, iteration=5))
    assert net.active_arch == SPACE.max()
    with torch.no_grad():
        net.set_max()
        teacher = net(batch.images)
        for k, (_, candidates) in enumerate(drawn[2:]):
            losses = []
            for arch in candidates:
                net.set_active(arch)
                losses.append(float(step._loss(net(batch.images), batch, teacher)))
            pick = max if choice == "worst" else min
            want = candidates[losses.index(pick(losses))]
            assert out.archs[2 + k] == want
            assert abs(float(out.losses[f"random{k}"]) - pick(losses)) < 1e-5


def test_one_candidate_draws_what_bignas_draws_and_bad_settings_are_refused() -> None:
    assert SandwichStep(SPACE, seed=3, candidates=1).archs_for(0, 7) == SandwichStep(
        SPACE, seed=3
    ).archs_for(0, 7)
    with pytest.raises(ValueError, match="allowed"):
        SandwichStep(SPACE, choice="median")
    with pytest.raises(ValueError, match="at least 1"):
        SandwichStep(SPACE, candidates=0)
    spec = _spec({"archCandidates": 3, "archChoice": "best"})
    assert (spec.schedule.arch_candidates, spec.schedule.arch_choice.value) == (3, "best")
    with pytest.raises(ValueError, match="archCandidates"):
        _spec({"archCandidates": 17})


def test_scoring_the_candidates_leaves_the_bn_running_statistics_as_they_were() -> None:
    import torch

    from gen5nas.supernet import Supernet
    from gen5nas.train.bn_calibration import batchnorms
    from gen5nas.train.sandwich import StepContext

    torch.manual_seed(0)
    net = Supernet(SPACE, num_classes=10, dropout=0.0).train()
    batch = _batch()

    def stats() -> list[torch.Tensor]:
        return [t.clone() for bn in batchnorms(net) for t in bn.state_dict().values()]

    before = stats()
    step = SandwichStep(SPACE, num_random=2, seed=2, candidates=3)
    candidates = step.draw(0, 5)[2][1]
    step._choose(net, candidates, batch, None, StepContext(epoch=0, iteration=5))
    assert all(torch.equal(a, b) for a, b in zip(before, stats(), strict=True))
    net.set_active(candidates[0])
    with torch.no_grad():
        net(batch.images)  # a plain train-mode forward does move them: the check can fail
    assert not all(torch.equal(a, b) for a, b in zip(before, stats(), strict=True))


def test_shared_resolution_runs_every_pass_of_a_step_at_one_drawn_resolution() -> None:
    resolutions = {tuple(r) for r in SPACE.input_resizer_cfg}
    per_subnet = SandwichStep(SPACE, num_random=2, seed=5)
    shared = SandwichStep(SPACE, num_random=2, seed=5, shared_resolution=True)
    seen = set()
    for i in range(12):
        plain, one = per_subnet.archs_for(0, i), shared.archs_for(0, i)
        hws = {tuple(a.resolution) for _, a in one}
        assert len(hws) == 1 and hws <= resolutions
        seen |= hws
        # the widths and depths are the per-subnet run's: only the resolution changes
        for (_, a), (_, b) in zip(plain, one, strict=True):
            assert a.model_copy(update={"resolution": b.resolution}) == b
    assert seen == resolutions  # the max subnet's widths do train at the small resolutions
    spec = _spec({"stepResolution": "shared"})
    assert spec.schedule.step_resolution.value == "shared"
    with pytest.raises(ValueError, match="stepResolution"):
        _spec({"stepResolution": "random"})


def test_min_weight_scales_the_min_passs_gradient_and_zero_skips_it() -> None:
    import copy

    import torch

    from gen5nas.supernet import Supernet
    from gen5nas.train.sandwich import StepContext

    torch.manual_seed(0)
    net = Supernet(SPACE, num_classes=10, dropout=0.0).train()
    batch = _batch()

    def grads(weight: float) -> tuple[list[str], torch.Tensor]:
        model = copy.deepcopy(net)
        out = SandwichStep(SPACE, num_random=0, seed=1, min_weight=weight)(
            model, batch, StepContext(epoch=0, iteration=3)
        )
        flat = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        return list(out.losses), flat

    names0, g0 = grads(0.0)
    names1, g1 = grads(1.0)
    _, g_quarter = grads(0.25)
    assert names0 == ["max"] and names1 == ["max", "min"]
    assert not torch.allclose(g0, g1)  # the min pass does move the shared weights
    # the max pass alone plus a quarter of the min pass's gradient
    assert torch.allclose(g_quarter, g0 + 0.25 * (g1 - g0), atol=1e-6)
    assert _spec({"minSubnetWeight": 0.25}).schedule.min_subnet_weight == 0.25
    with pytest.raises(ValueError, match="minSubnetWeight"):
        _spec({"minSubnetWeight": 1.5})
    with pytest.raises(ValueError, match="min_weight"):
        SandwichStep(SPACE, min_weight=-0.1)

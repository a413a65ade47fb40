"""Optimizer parameter groups and the per-iteration warmup + cosine schedule."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from gen5nas.spec.training import OptimizerSpec, ScheduleSpec
from gen5nas.train.optim import WarmupCosine, build_optimizer, build_scheduler, default_lr


def test_no_weight_decay_on_batchnorm_and_bias() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    opt = build_optimizer(model, OptimizerSpec(weight_decay=1e-4), global_batch=256)
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(model[0].weight), id(model[3].weight)}
    assert opt.defaults["nesterov"] is True
    assert opt.param_groups[0]["lr"] == pytest.approx(default_lr(256)) == pytest.approx(0.1)


def test_decay_everything_when_asked() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    opt = build_optimizer(model, OptimizerSpec(no_decay_bn_bias=False), global_batch=64)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["lr"] == pytest.approx(0.025)


def test_warmup_then_cosine_per_iteration() -> None:
    f = WarmupCosine(warmup_iters=10, total_iters=110, min_ratio=0.1)
    warm = [f(i) for i in range(10)]
    assert warm == sorted(warm) and warm[0] > 0 and warm[-1] == pytest.approx(1.0)
    decay = [f(i) for i in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(decay))
    assert decay[0] == pytest.approx(1.0) and decay[-1] == pytest.approx(0.1)
    assert f(60) == pytest.approx(0.55)  # halfway through the cosine


def test_scheduler_steps_the_optimizer_lr() -> None:
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = build_scheduler(opt, ScheduleSpec(epochs=2, warmup_epochs=1), iters_per_epoch=4)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == pytest.approx(1.0) and lrs[7] < 0.2

"""The sandwich step (BigNAS) and BN recalibration."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from gen5nas.data import Batch
from gen5nas.spec import load_space
from gen5nas.supernet import Supernet, extract_subnet
from gen5nas.tasks.classification import distillation_loss
from gen5nas.train.bn_calibration import BatchCache, recalibrate_bn
from gen5nas.train.sandwich import PlainStep, SandwichStep, StepContext

SPACE = load_space("mobilenetv2_tiny")


def _batch(n: int = 6, res: tuple[int, int] = (32, 32), seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(n, 3, *res, generator=g), torch.randint(0, 10, (n,), generator=g), 0)


def test_archs_depend_only_on_seed_epoch_and_iteration() -> None:
    step = SandwichStep(SPACE, num_random=2, seed=4)
    archs = step.archs_for(epoch=1, iteration=7)
    assert [name for name, _ in archs] == ["max", "min", "random0", "random1"]
    assert archs[0][1] == SPACE.max() and archs[1][1] == SPACE.min()
    assert all(SPACE.contains(a) for _, a in archs)
    assert step.archs_for(1, 7) == SandwichStep(SPACE, seed=4).archs_for(1, 7)
    others = {SandwichStep(SPACE, seed=4).archs_for(1, i)[2][1].key() for i in range(8)}
    assert len(others) > 1  # a different random subnet at other iterations


def test_sandwich_accumulates_four_passes_with_distillation_and_dropout_on_max_only() -> None:
    torch.manual_seed(0)
    net = Supernet(SPACE, num_classes=10, dropout=0.0)  # no dropout noise: compare exactly
    batch = _batch()
    step = SandwichStep(SPACE, num_random=2, label_smoothing=0.1, seed=1)
    dropout_flags: list[bool] = []
    net.classifier.register_forward_hook(lambda m, i, o: dropout_flags.append(net.dropout_active))
    out = step(net, batch, StepContext(epoch=0, iteration=0))
    assert list(out.losses) == ["max", "min", "random0", "random1"]
    assert dropout_flags == [True, False, False, False]
    assert net.active_arch == SPACE.max() and net.dropout_active
    got = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}

    # Reference: the same four losses, one by one, the teacher detached.
    net.zero_grad(set_to_none=True)
    teacher = None
    for name, arch in step.archs_for(0, 0):
        net.set_active(arch)
        logits = net(batch.images)
        if teacher is None:
            loss = nn.functional.cross_entropy(logits, batch.targets, label_smoothing=0.1)
            teacher = logits.detach()
        else:
            p = torch.softmax(teacher, 1)
            loss = (
                (p * (torch.log_softmax(teacher, 1) - torch.log_softmax(logits, 1))).sum(1).mean()
            )
        assert torch.allclose(loss, out.losses[name], atol=1e-5), name
        loss.backward()
    for n, p in net.named_parameters():
        if p.grad is not None:
            assert torch.allclose(got[n], p.grad, atol=1e-5), n


def test_distillation_loss_is_zero_only_when_matching_the_teacher() -> None:
    logits = torch.randn(4, 10)
    assert distillation_loss(logits, logits).abs() < 1e-6
    assert distillation_loss(torch.zeros(4, 10), logits) > 0


def test_plain_step_is_cross_entropy() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 10))
    batch = _batch(res=(4, 4))
    out = PlainStep(label_smoothing=0.0)(model, batch, StepContext(0, 0))
    expected = nn.functional.cross_entropy(model(batch.images), batch.targets)
    assert torch.allclose(out.losses["loss"], expected)
    assert model[1].weight.grad is not None


def test_recalibration_is_the_average_of_batch_statistics() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, momentum=0.3), nn.Dropout(0.5))
    model.train()
    batches = [_batch(seed=s).images for s in range(3)]
    used = recalibrate_bn(model, batches)
    assert used == 18
    bn = model[1]
    with torch.no_grad():
        feats = [model[0](x) for x in batches]
    mean = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
    var = torch.stack([f.transpose(0, 1).flatten(1).var(1, unbiased=True) for f in feats]).mean(0)
    assert torch.allclose(bn.running_mean, mean, atol=1e-5)
    assert torch.allclose(bn.running_var, var, atol=1e-4)
    assert bn.momentum == 0.3 and model.training and model[2].training  # restored


def test_recalibrating_a_subnet_in_the_supernet_equals_calibrating_it_extracted() -> None:
    torch.manual_seed(0)
    net = Supernet(SPACE, num_classes=10)
    arch = SPACE.sample(random.Random(5))
    batches = BatchCache((_batch(8, tuple(arch.resolution), seed=s) for s in range(100)), 3)
    assert len(batches) == 3
    static = extract_subnet(net, arch)
    net.set_active(arch)
    recalibrate_bn(net, batches)
    recalibrate_bn(static, batches)
    x = _batch(4, tuple(arch.resolution), seed=99).images
    net.eval()
    static.eval()
    with torch.no_grad():
        assert torch.allclose(net(x), static(x), atol=1e-4)


def test_calibration_without_images_is_refused() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="no calibration images"):
        recalibrate_bn(model, [])

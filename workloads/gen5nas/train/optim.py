"""Optimizer and learning-rate schedule (BigNAS / AttentiveNAS recipe, scaled to the batch).

SGD with Nesterov momentum; weight decay only on conv/linear weights (BN affine parameters and
biases are excluded: decaying them only fights the normalisation). The learning rate is set
per *iteration*: linear warmup from ~0, then cosine decay to ``min_lr_ratio x lr``.
"""

from __future__ import annotations

import math

from torch import nn
from torch.optim import SGD, Optimizer
from torch.optim.lr_scheduler import LambdaLR

from gen5nas.spec.training import OptimizerSpec, ScheduleSpec


def default_lr(global_batch: int) -> float:
    """0.1 per 256 images (linear scaling rule); BigNAS's 0.8 per 2048 is the same ratio."""
    return 0.1 * global_batch / 256


def param_groups(model: nn.Module, weight_decay: float, no_decay_bn_bias: bool) -> list[dict]:
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (no_decay if no_decay_bn_bias and param.ndim <= 1 else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model: nn.Module, spec: OptimizerSpec, global_batch: int) -> SGD:
    lr = spec.lr if spec.lr is not None else default_lr(global_batch)
    return SGD(
        param_groups(model, spec.weight_decay, spec.no_decay_bn_bias),
        lr=lr,
        momentum=spec.momentum,
        nesterov=spec.nesterov and spec.momentum > 0,
    )


class WarmupCosine:
    """LR multiplier at iteration ``it``: linear warmup to 1, then cosine to ``min_ratio``.

    A class rather than a lambda so that ``LambdaLR.state_dict`` saves its settings.
    """

    def __init__(self, warmup_iters: int, total_iters: int, min_ratio: float = 0.0) -> None:
        self.warmup_iters = max(0, warmup_iters)
        self.total_iters = max(1, total_iters)
        self.min_ratio = min_ratio

    def __call__(self, it: int) -> float:
        if it < self.warmup_iters:
            return (it + 1) / self.warmup_iters
        span = max(1, self.total_iters - self.warmup_iters)
        progress = min(1.0, (it - self.warmup_iters) / span)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer: Optimizer, spec: ScheduleSpec, iters_per_epoch: int) -> LambdaLR:
    """Per-iteration warmup + cosine over ``spec.epochs`` epochs; step it after every update."""
    return LambdaLR(
        optimizer,
        WarmupCosine(
            warmup_iters=round(min(spec.warmup_epochs, spec.epochs) * iters_per_epoch),
            total_iters=spec.epochs * iters_per_epoch,
            min_ratio=spec.min_lr_ratio,
        ),
    )

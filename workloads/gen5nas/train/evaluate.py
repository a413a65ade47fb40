"""Validation: top-1/top-5 accuracy and loss over a (sharded) loader, summed over ranks.

Validators are the trainer's other strategy (``validator(model, ctx) -> metrics``):
:class:`SupernetValidator` recalibrates BN for the min and then the max subnet and evaluates
each (max last, so the weights saved right after hold the max subnet's statistics);
:class:`StaticValidator` evaluates a static model as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol, cast

import torch
import torch.nn.functional as F
from torch import nn

from gen5nas.data.imagefolder import Batch
from gen5nas.spec import SearchSpace
from gen5nas.train.bn_calibration import recalibrate_bn
from gen5nas.train.distributed import all_reduce_sum, unwrap

if TYPE_CHECKING:
    from gen5nas.supernet import Supernet


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[Batch],
    device: torch.device,
    channels_last: bool = False,
) -> dict[str, float]:
    """``accuracy_top1``/``accuracy_top5`` (percent), ``loss``, ``images`` and ``skipped``
    (unreadable images) over every rank's share of ``loader``."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(5, dtype=torch.float64, device=device)  # top1, top5, loss, n, skipped
    try:
        for batch in loader:
            totals[4] += batch.skipped
            if len(batch) == 0:
                continue
            images = batch.images.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            targets = batch.targets.to(device, non_blocking=True)
            logits = model(images).float()
            k = min(5, logits.shape[1])
            topk = logits.topk(k, dim=1).indices
            hits = topk.eq(targets[:, None])
            totals[0] += hits[:, 0].sum()
            totals[1] += hits.any(dim=1).sum()
            totals[2] += F.cross_entropy(logits, targets, reduction="sum")
            totals[3] += targets.shape[0]
    finally:
        model.train(was_training)
    all_reduce_sum(totals)
    n = max(1.0, float(totals[3]))
    return {
        "accuracy_top1": 100.0 * float(totals[0]) / n,
        "accuracy_top5": 100.0 * float(totals[1]) / n,
        "loss": float(totals[2]) / n,
        "images": float(totals[3]),
        "skipped": float(totals[4]),
    }


class Validator(Protocol):
    def __call__(self, model: nn.Module) -> dict[str, float]: ...


class SupernetValidator:
    """Metrics ``min/...`` and ``max/...``, each after BN recalibration for that subnet."""

    def __init__(
        self,
        space: SearchSpace,
        val_loader: Iterable[Batch],
        calibration_batches: Callable[[], Iterable[Batch]],
        device: torch.device,
        channels_last: bool = False,
    ) -> None:
        self.space = space
        self.val_loader = val_loader
        self.calibration_batches = calibration_batches
        self.device = device
        self.channels_last = channels_last

    def __call__(self, model: nn.Module) -> dict[str, float]:
        net = cast("Supernet", unwrap(model))
        metrics: dict[str, float] = {}
        try:
            for name, arch in (("min", self.space.min()), ("max", self.space.max())):
                net.set_active(arch)
                recalibrate_bn(
                    net,
                    self.calibration_batches(),
                    device=self.device,
                    channels_last=self.channels_last,
                )
                result = evaluate(net, self.val_loader, self.device, self.channels_last)
                metrics.update({f"{name}/{key}": value for key, value in result.items()})
        finally:
            net.set_max()
        return metrics


class StaticValidator:
    """Metrics of a static model as it is (its BN statistics were trained with it)."""

    def __init__(
        self, val_loader: Iterable[Batch], device: torch.device, channels_last: bool = False
    ) -> None:
        self.val_loader = val_loader
        self.device = device
        self.channels_last = channels_last

    def __call__(self, model: nn.Module) -> dict[str, float]:
        return evaluate(unwrap(model), self.val_loader, self.device, self.channels_last)

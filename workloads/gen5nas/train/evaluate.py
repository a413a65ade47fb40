"""Validation during training: the task's metrics (:meth:`gen5nas.tasks.base.Task.evaluate`,
over a sharded loader, summed over ranks) of the supernet's min and max subnets or of a static
model.

Validators are the trainer's other strategy (``validator(model, ctx) -> metrics``):
:class:`SupernetValidator` recalibrates BN for the min and then the max subnet and evaluates
each (max last, so the weights saved right after hold the max subnet's statistics);
:class:`StaticValidator` evaluates a static model as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol, cast

import torch
from torch import nn

from gen5nas.data.imagefolder import Batch
from gen5nas.spec import SearchSpace
from gen5nas.tasks.base import Task
from gen5nas.tasks.classification import CLASSIFICATION
from gen5nas.train.bn_calibration import recalibrate_bn
from gen5nas.train.distributed import unwrap

if TYPE_CHECKING:
    from gen5nas.supernet import Supernet


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
        task: Task = CLASSIFICATION,
    ) -> None:
        self.space = space
        self.task = task
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
                result = self.task.evaluate(net, self.val_loader, self.device, self.channels_last)
                metrics.update({f"{name}/{key}": value for key, value in result.items()})
        finally:
            net.set_max()
        return metrics


class StaticValidator:
    """Metrics of a static model as it is (its BN statistics were trained with it)."""

    def __init__(
        self,
        val_loader: Iterable[Batch],
        device: torch.device,
        channels_last: bool = False,
        task: Task = CLASSIFICATION,
    ) -> None:
        self.task = task
        self.val_loader = val_loader
        self.device = device
        self.channels_last = channels_last

    def __call__(self, model: nn.Module) -> dict[str, float]:
        return self.task.evaluate(unwrap(model), self.val_loader, self.device, self.channels_last)

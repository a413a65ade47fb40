"""Training-step strategies: what one optimizer step computes.

A strategy is called as ``step(model, batch, ctx) -> StepOutput`` and runs the forward and
backward passes only; the :class:`~gen5nas.train.trainer.Trainer` zeroes gradients before,
clips and steps the optimizer and the LR schedule after. Two strategies:

- :class:`SandwichStep` (BigNAS): the max subnet on the ground truth (the task's
  ``ground_truth_loss``, dropout on), then the min subnet and ``num_random`` random subnets by
  in-place distillation: the task's ``distillation_loss`` against the max subnet's detached
  output (dropout off; for classification, KL divergence to its soft output). Gradients of the passes
  accumulate; under DDP all but the last pass run in ``no_sync``. The random archs come from
  ``random.Random(f"{seed}:{epoch}:{iteration}")``: the same on every rank without any
  communication, and the same after a resume; ``sampler`` picks them
  (:mod:`gen5nas.train.arch_sampling`). With ``candidates`` > 1 (AttentiveNAS's WorstUp /
  BestUp on the minibatch loss), each random pass draws that many archs and trains the one
  whose loss on this batch, the same loss it would train on, is the highest (``choice``
  "worst") or the lowest ("best"); the losses are averaged over ranks first, so every rank
  trains the same arch. The scoring forwards leave the BN running statistics untouched.
  With ``shared_resolution`` (Once-for-All's elastic resolution) every pass of a step runs at
  one resolution drawn from the same generator, so the max subnet teaches, and the min subnet
  learns, at every resolution rather than only at the largest and the smallest.
  ``min_weight`` scales the min subnet's loss (0 skips its pass): the sandwich trains that one
  arch every step, which lifts its inherited score above what it would reach alone.
- :class:`PlainStep`: one forward/backward on the task's ground truth loss (a static subnet;
  retraining).

The losses come from the :class:`~gen5nas.tasks.base.Task` (classification by default).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

import torch
from torch import Tensor, nn

from gen5nas.data.imagefolder import Batch
from gen5nas.spec import Arch, SearchSpace
from gen5nas.spec.training import ArchChoice
from gen5nas.tasks.base import Task
from gen5nas.tasks.classification import CLASSIFICATION
from gen5nas.train.arch_sampling import ArchSampler, uniform
from gen5nas.train.bn_calibration import frozen_bn_statistics
from gen5nas.train.distributed import all_reduce_mean, maybe_no_sync, unwrap

if TYPE_CHECKING:
    from gen5nas.supernet import Supernet


CHOICES = tuple(c.value for c in ArchChoice)  # which of a random pass's candidates it trains


@dataclass
class StepContext:
    epoch: int  # 0-based
    iteration: int  # global optimizer step index (0-based)
    autocast: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext


@dataclass
class StepOutput:
    losses: dict[str, Tensor]  # per pass name ("max", "min", "random0", ...), detached
    archs: list[Arch] = field(default_factory=list)  # archs trained, in order (empty: static)


class TrainStep(Protocol):
    def __call__(self, model: nn.Module, batch: Batch, ctx: StepContext) -> StepOutput: ...


class SandwichStep:
    """One BigNAS iteration over a supernet (see the module docstring)."""

    def __init__(
        self,
        space: SearchSpace,
        num_random: int = 2,
        label_smoothing: float = 0.1,
        distill: bool = True,
        temperature: float = 1.0,
        seed: int = 0,
        task: Task = CLASSIFICATION,
        sampler: ArchSampler = uniform,
        candidates: int = 1,
        choice: str = "worst",
        shared_resolution: bool = False,
        min_weight: float = 1.0,
    ) -> None:
        if not 0.0 <= min_weight <= 1.0:
            raise ValueError(f"min_weight must be in [0, 1], got {min_weight}")
        if candidates < 1:
            raise ValueError(f"candidates must be at least 1, got {candidates}")
        if choice not in CHOICES:
            raise ValueError(f"unknown choice {choice!r}; allowed: {sorted(CHOICES)}")
        self.space = space
        self.candidates = candidates
        self.choice = choice
        self.task = task
        self.sampler = sampler
        self.num_random = num_random
        self.label_smoothing = label_smoothing
        self.distill = distill
        self.temperature = temperature
        self.seed = seed
        self.shared_resolution = shared_resolution
        self.min_weight = min_weight

    def draw(self, epoch: int, iteration: int) -> list[tuple[str, list[Arch]]]:
        """Each pass's name and its candidate archs (one for max, min and ``candidates`` == 1)."""
        rng = random.Random(f"{self.seed}:{epoch}:{iteration}")
        passes = [("max", [self.space.max()])]
        if self.min_weight > 0:
            passes.append(("min", [self.space.min()]))
        draws = [self.sampler(self.space, rng, self.num_random) for _ in range(self.candidates)]
        passes += [(f"random{i}", [d[i] for d in draws]) for i in range(self.num_random)]
        if self.shared_resolution:
            # drawn after the archs, so the widths and depths match a per-subnet run's
            hw = tuple(rng.choice(self.space.input_resizer_cfg))
            passes = [
                (name, [a.model_copy(update={"resolution": hw}) for a in archs])
                for name, archs in passes
            ]
        return passes

    def archs_for(self, epoch: int, iteration: int) -> list[tuple[str, Arch]]:
        """Each pass's name and arch when there is one candidate (its first one otherwise)."""
        return [(name, archs[0]) for name, archs in self.draw(epoch, iteration)]

    def _loss(self, output: Any, batch: Batch, teacher: Any) -> Tensor:
        if teacher is None or not self.distill:
            return self.task.ground_truth_loss(output, batch, self.label_smoothing)
        return self.task.distillation_loss(output, teacher, self.temperature)

    @torch.no_grad()
    def _choose(
        self, net: Supernet, archs: Sequence[Arch], batch: Batch, teacher: Any, ctx: StepContext
    ) -> Arch:
        """The candidate with the highest (worst) or lowest (best) loss on ``batch``."""
        if len(archs) == 1:
            return archs[0]
        scores = []
        with frozen_bn_statistics(net):
            for arch in archs:
                net.set_active(arch)
                with ctx.autocast():
                    scores.append(self._loss(net(batch.images), batch, teacher).float())
        mean = all_reduce_mean(torch.stack(scores))
        pick = mean.argmax() if self.choice == "worst" else mean.argmin()
        return archs[int(pick)]

    def __call__(self, model: nn.Module, batch: Batch, ctx: StepContext) -> StepOutput:
        net = cast("Supernet", unwrap(model))
        passes = self.draw(ctx.epoch, ctx.iteration)
        losses: dict[str, Tensor] = {}
        trained: list[Arch] = []
        teacher: Any = None
        try:
            for i, (name, candidates) in enumerate(passes):
                net.dropout_active = name == "max"
                arch = self._choose(net, candidates, batch, teacher, ctx)
                trained.append(arch)
                net.set_active(arch)
                with maybe_no_sync(model, i < len(passes) - 1), ctx.autocast():
                    output = model(batch.images)
                    loss = self._loss(output, batch, teacher)
                (loss * self.min_weight if name == "min" else loss).backward()
                if name == "max":
                    teacher = self.task.detach(output)
                losses[name] = loss.detach()
        finally:
            net.dropout_active = True
            net.set_max()
        return StepOutput(losses, trained)


class PlainStep:
    """The ground truth loss on one static model (retraining an extracted subnet)."""

    def __init__(self, label_smoothing: float = 0.1, task: Task = CLASSIFICATION) -> None:
        self.label_smoothing = label_smoothing
        self.task = task

    def __call__(self, model: nn.Module, batch: Batch, ctx: StepContext) -> StepOutput:
        with ctx.autocast():
            loss = self.task.ground_truth_loss(model(batch.images), batch, self.label_smoothing)
        loss.backward()
        return StepOutput({"loss": loss.detach()})


__all__ = [
    "PlainStep",
    "SandwichStep",
    "StepContext",
    "StepOutput",
    "TrainStep",
]

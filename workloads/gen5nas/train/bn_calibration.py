"""BatchNorm recalibration: running statistics for the subnet that is active right now.

The BN choice (BigNAS / OFA): during supernet training every pass normalises with its own
*batch* statistics; the shared running statistics would be a blend of every subnet's and fit
none, so they are never trusted. Before a subnet is evaluated (validation of the max/min
subnets here, every candidate in the search step, an exported subnet) its running statistics
are recomputed: reset, then a cumulative average (``momentum=None``) over a few training
batches in train mode with gradients off, then averaged across ranks. Only the active slice of
each elastic BN changes, so calibrating one subnet leaves the others' channels at their reset
values; calibrate again before evaluating another one.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from gen5nas.data.imagefolder import Batch
from gen5nas.train.distributed import all_reduce_mean


def batchnorms(model: nn.Module) -> list[_BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BatchNorm)]


@contextlib.contextmanager
def frozen_bn_statistics(model: nn.Module) -> Iterator[None]:
    """Forwards inside leave every BN's running statistics (and batch count) as they were.

    For forwards in train mode that only look (a sampler scoring candidates on a batch): they
    normalise with batch statistics as training does, without blending into the running ones.
    """
    bns = batchnorms(getattr(model, "module", model))
    saved = [
        [
            b.clone()
            for b in (bn.running_mean, bn.running_var, bn.num_batches_tracked)
            if b is not None
        ]
        for bn in bns
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for bn, copies in zip(bns, saved, strict=True):
                buffers = [bn.running_mean, bn.running_var, bn.num_batches_tracked]
                for buffer, copy in zip([b for b in buffers if b is not None], copies, strict=True):
                    buffer.copy_(copy)


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module,
    batches: Iterable[Batch | torch.Tensor],
    num_batches: int | None = None,
    device: torch.device | None = None,
    channels_last: bool = False,
) -> int:
    """Recompute the BN running statistics of ``model`` (its active subnet) on ``batches``.

    Works on a supernet, a static subnet, or a DDP-wrapped model; dropout stays off. Returns
    the number of images used on this rank. The model's train/eval mode and BN momenta are
    restored afterwards. Raises ValueError when ``batches`` is empty (statistics would stay
    reset, silently ruining accuracy).
    """
    model = getattr(model, "module", model)
    bns = batchnorms(model)
    if not bns:
        return 0
    was_training = {m: m.training for m in model.modules()}
    momenta = [bn.momentum for bn in bns]
    device = device or next(model.parameters()).device
    seen = 0
    try:
        model.eval()
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the calibration batches
            bn.train()
        # islice stops before asking for batch num_batches + 1 (a loop with a break loads it).
        for batch in itertools.islice(batches, num_batches):
            images = batch.images if isinstance(batch, Batch) else batch
            if images.shape[0] == 0:
                continue
            images = images.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            model(images)
            seen += int(images.shape[0])
        if seen == 0:
            raise ValueError("no calibration images: BN statistics cannot be recomputed")
        for bn in bns:
            assert bn.running_mean is not None and bn.running_var is not None
            all_reduce_mean(bn.running_mean)
            all_reduce_mean(bn.running_var)
    finally:
        for bn, momentum in zip(bns, momenta, strict=True):
            bn.momentum = momentum
        for m, training in was_training.items():
            m.train(training)
    return seen


class BatchCache:
    """The first ``num_batches`` batches of a loader, kept in memory and replayed: the search
    step calibrates every candidate on the same images (comparable scores, no reloading)."""

    def __init__(self, batches: Iterable[Batch], num_batches: int) -> None:
        self.batches: list[Batch] = list(itertools.islice(batches, num_batches))
        # A loader's dataset, kept for tasks whose evaluation reads it (COCO annotations).
        self.dataset = getattr(batches, "dataset", None)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

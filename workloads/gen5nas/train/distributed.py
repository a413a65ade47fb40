"""Process-group setup from the torchrun environment, and the DDP wrapper for supernets.

``torchrun --nproc-per-node N [--nnodes M --rdzv-endpoint HOST:PORT] -m gen5nas train ...``
sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; a plain ``gen5nas train``
has none of them and runs as a single process. NCCL on GPUs, gloo on CPU.

Supernet passes use different parts of the weights, so DDP runs with
``find_unused_parameters=True``: in the pass that synchronises (the sandwich's last one) a
parameter the active subnet does not touch is still reported ready, and its gradient,
accumulated locally during the earlier ``no_sync`` passes, is all-reduced with the rest.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_from_torchrun(device: str | None = None) -> DistEnv:
    """Read the torchrun variables and initialise the process group when WORLD_SIZE > 1.

    ``device``: "cpu" or "cuda" (default: cuda when available). Each process takes the GPU of
    its LOCAL_RANK. Idempotent: an already initialised group is reused.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        dist.init_process_group(
            backend,
            rank=rank,
            world_size=world,
            timeout=timedelta(minutes=30),
            device_id=dev if use_cuda else None,
        )
        log.info("rank %d/%d (local %d) joined via %s on %s", rank, world, local_rank, backend, dev)
    return DistEnv(rank, world, local_rank, dev)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(model: nn.Module, env: DistEnv, elastic: bool) -> nn.Module:
    """DDP-wrap ``model`` when distributed; ``elastic`` (a supernet) finds unused parameters."""
    if not env.distributed:
        return model
    ids = [env.device.index] if env.device.type == "cuda" else None
    # BN running statistics are recalibrated (and all-reduced) before every use, so buffers
    # are not broadcast on every forward (the newer spelling of broadcast_buffers=False).
    sync: dict[str, Any] = (
        {"forward_sync_buffers": False}
        if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
        else {"broadcast_buffers": False}
    )
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=elastic, **sync)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


@contextlib.contextmanager
def maybe_no_sync(model: nn.Module, skip_sync: bool) -> Iterator[None]:
    """Accumulate gradients locally (DDP ``no_sync``) when ``skip_sync``; else a no-op."""
    if skip_sync and isinstance(model, DistributedDataParallel):
        with model.no_sync():
            yield
    else:
        yield


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """In-place mean over ranks (a no-op without a process group)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor)
        tensor.div_(dist.get_world_size())
    return tensor


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor)
    return tensor


def all_gather_objects(obj: T) -> list[T]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` without a process group."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, obj)
        return gathered
    return [obj]


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()

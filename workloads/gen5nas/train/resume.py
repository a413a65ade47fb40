"""Finding the point a training resumes from, the same on every rank.

Every rank reads the work dir itself (no broadcast of the weights): under torchrun the ranks
exchange what they found and all refuse to go on unless it is the same checkpoint (a work dir
that is not on a shared filesystem). The checkpoint's meta must match this run's (the space,
the model kind, the classes, the arch, the task), so a work dir is never resumed for another
run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.distributed as dist

from gen5nas.errors import CheckpointError
from gen5nas.spec import SearchSpace
from gen5nas.train.checkpoint import (
    ResumePoint,
    check_resume_points,
    check_same_space,
    last_checkpoint,
    read_checkpoint,
)
from gen5nas.train.distributed import DistEnv

MATCHED_META = ("model_kind", "num_classes", "arch", "task")


def check_meta(meta: dict[str, Any], stored: dict[str, Any], source: str) -> None:
    """Raise :class:`CheckpointError` unless checkpoint ``source``'s meta fits this run's."""
    if "space" in meta and meta["space"] is not None:
        if stored.get("space") is None:
            raise CheckpointError(f"{source} holds no search space; it is not a supernet's")
        check_same_space(stored, SearchSpace.model_validate(meta["space"]), source)
    for key in MATCHED_META:
        if key in meta and stored.get(key) != meta[key]:
            raise CheckpointError(
                f"{source} does not match this run: {key} is {stored.get(key)!r} in the "
                f"checkpoint, {meta[key]!r} here; use another --work-dir"
            )


def read_resume_state(work_dir: Path, env: DistEnv) -> tuple[Path | None, dict[str, Any] | None]:
    """The checkpoint ``work_dir``'s pointer names and its state (``(None, None)``: a fresh
    start). Collective under torchrun."""
    path: Path | None = None
    state: dict[str, Any] | None = None
    error: CheckpointError | None = None
    try:
        path = last_checkpoint(work_dir)
        state = read_checkpoint(path) if path is not None else None
    except CheckpointError as exc:
        if not env.distributed:
            raise
        error = exc  # raised after the exchange, so that no rank waits on this one
    if env.distributed:
        point: ResumePoint = None
        if error is not None:
            point = str(error)
        elif state is not None:
            point = (int(state["epoch"]), int(state["iteration"]))
        points: list[ResumePoint] = [None] * env.world_size
        dist.all_gather_object(points, point)
        check_resume_points(points, work_dir)
        if error is not None:
            raise error
    return path, state

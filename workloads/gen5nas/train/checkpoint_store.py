"""The checkpoint files of one training work dir: rotation, the pointer and the best file.

::

    epoch_N.pth / iter_N.pth     the checkpoints; the last ``keep_last`` epoch files are kept,
                                 an iteration file only until the next checkpoint
    last_checkpoint              the pointer (what a resume reads)
    <best_prefix>N.pth           the best epoch's weights: a hard link to ``epoch_N.pth``
                                 (a copy where links are refused), or a file of its own when
                                 the best epoch wrote no checkpoint; ``best_prefix`` names the
                                 task's metric (``checkpoint.best_prefix``)

The best file is linked before the pointer moves, so a kill never leaves a checkpoint whose
best file is missing; older best files go once the pointer has moved past them. Only the
writing process (rank 0) calls the methods that touch files; the trainer gathers the state
(a collective) on every rank before.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from gen5nas.atomic import atomic_write
from gen5nas.train.checkpoint import (
    BEST_PREFIX,
    best_epoch_of,
    best_files,
    save_checkpoint,
    write_pointer,
)

log = logging.getLogger(__name__)


def _number(path: Path) -> int:
    return int(path.stem.split("_")[-1])


class CheckpointStore:
    def __init__(self, work_dir: Path, keep_last: int, best_prefix: str = BEST_PREFIX) -> None:
        self.work_dir = Path(work_dir)
        self.keep_last = keep_last
        self.best_prefix = best_prefix

    def best_path(self, epoch: int) -> Path:
        return self.work_dir / f"{self.best_prefix}{epoch}.pth"

    def existing_best(self, epoch: int | None) -> Path | None:
        if epoch is None:
            return None
        path = self.best_path(epoch)
        return path if path.exists() else None

    def save(
        self,
        state: dict[str, Any],
        name: str,
        *,
        epoch: int,
        best: bool = False,
        best_epoch: int | None = None,
    ) -> Path:
        """Write checkpoint ``name``; with ``best``, also the best file of ``epoch``, before the
        pointer: a checkpoint the pointer names never claims a best epoch whose file is
        missing. ``best_epoch`` (the state's) keeps its best file when older ones go."""
        path = self.work_dir / name
        save_checkpoint(state, path)
        if best:
            self.link_best(path, epoch)
        write_pointer(self.work_dir, path)
        if best_epoch is not None:  # older bests go once the pointer has moved on
            self.drop_other_best(self.best_path(best_epoch))
        self.prune(keep=path)
        return path

    def save_best_state(self, state: dict[str, Any], epoch: int) -> Path:
        """A new best at an epoch without a checkpoint: the state goes to the best file itself
        (the previous best stays until the pointer moves past it)."""
        best = self.best_path(epoch)
        save_checkpoint(state, best)
        return best

    def prune(self, keep: Path) -> None:
        for old in self.work_dir.glob("iter_*.pth"):
            if old != keep:
                old.unlink(missing_ok=True)
        epochs = sorted(self.work_dir.glob("epoch_*.pth"), key=_number)
        for old in epochs[: -self.keep_last]:
            if old != keep:
                old.unlink(missing_ok=True)

    def drop_other_best(self, keep: Path) -> None:
        """Every best file but ``keep``, those named by another metric key too (an earlier
        version's name for this run's)."""
        for old in best_files(self.work_dir, self.best_prefix):
            if old != keep:
                old.unlink(missing_ok=True)

    def link_best(self, source: Path, epoch: int) -> Path:
        """Make the best file of ``epoch`` a hard link to ``source`` (no second copy of the
        weights; a copy where links are refused), put in place atomically."""
        best = self.best_path(epoch)
        tmp = best.with_name(f".{best.name}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)
            os.replace(tmp, best)
        except OSError:
            tmp.unlink(missing_ok=True)
            with open(source, "rb") as src:
                atomic_write(best, lambda f: shutil.copyfileobj(src, f))
        return best

    def repair_best(self, best_epoch: int | None) -> None:
        """At resume: the checkpoint's best epoch must have its best file. Runs of older
        versions linked it after the pointer, so a kill in between lost it; re-link it from
        its epoch file (or from its best file under an earlier version's name), and drop best
        files of other epochs (left by a kill before the pointer moved: those epochs are about
        to be redone)."""
        if best_epoch is None:
            return
        best = self.best_path(best_epoch)
        if not best.exists():
            epoch_file = self.work_dir / f"epoch_{best_epoch}.pth"
            renamed = [
                p
                for p in best_files(self.work_dir, self.best_prefix)
                if best_epoch_of(p) == best_epoch
            ]
            source = epoch_file if epoch_file.exists() else next(iter(renamed), None)
            if source is None:
                log.warning(
                    "%s and %s are both missing: the best checkpoint is lost until the next "
                    "new best",
                    best.name,
                    epoch_file.name,
                )
                return
            log.warning("%s was missing; re-linked from %s", best.name, source.name)
            self.link_best(source, best_epoch)
        self.drop_other_best(best)

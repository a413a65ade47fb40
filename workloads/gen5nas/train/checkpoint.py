"""Checkpoints: atomic files, the ``last_checkpoint`` pointer, and loading a trained supernet.

Layout of a work dir (the seed's names)::

    epoch_N.pth                                  after epoch N (the last ``keepLast`` kept)
    best_max_subnet.<metric>_epoch_N.pth         the best max subnet so far (what search uses),
                                                 named by the task's metric key: the seed's
                                                 ``best_max_subnet.accuracy_top1_epoch_N.pth``
                                                 for classification, ``bbox_mAP`` for detection
    last_checkpoint                              one line: the file name to resume from

A checkpoint is a dict of plain types and tensors (loadable with ``weights_only=True``, so
opening one never runs code from the file): ``format``, ``model``, ``optimizer``,
``scheduler``, ``epoch`` (epochs completed), ``iteration`` (optimizer steps so far),
``iter_in_epoch`` (steps done in an unfinished epoch; 0 at an epoch boundary), ``rng``,
``best`` ({score, epoch, file}), ``metrics``, and ``meta``: ``space`` (the resolved search
space as a dict), ``num_classes``, ``classes``, ``activation``, ``dropout``, ``task``,
``model_kind`` ("supernet" or "static"), ``arch`` (static models), ``gen5nas_version``.

Writes go to a temporary file in the same directory, are fsynced, then ``os.replace``d into
place (and the directory fsynced): a crash at any moment leaves either the old file or the new
one, never a torn one. The pointer is written the same way and only after its target.
"""

from __future__ import annotations

import contextlib
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gen5nas import __version__
from gen5nas.atomic import atomic_write, atomic_write_text
from gen5nas.errors import CheckpointError
from gen5nas.spec import SearchSpace
from gen5nas.train.finite import assert_finite_state

FORMAT = "gen5nas-checkpoint/v1"
POINTER = "last_checkpoint"
BEST_STEM = "best_max_subnet"


def best_prefix(metric_key: str, stem: str = BEST_STEM) -> str:
    """A best file's name up to its epoch: ``<stem>.<metric key>_epoch_``."""
    return f"{stem}.{metric_key}_epoch_"


BEST_PREFIX = best_prefix("accuracy_top1")  # classification's (the seed's name)


def best_files(work_dir: str | Path, prefix: str = BEST_PREFIX) -> list[Path]:
    """The best files in ``work_dir`` of ``prefix``'s stem, by epoch, whatever metric key
    names them: runs of earlier versions named a detection run's ``accuracy_top1`` too, and
    search and export still read those."""
    stem = prefix.split(".", 1)[0]
    found = Path(work_dir).glob(f"{stem}.*_epoch_*.pth")
    return sorted(found, key=lambda p: (best_epoch_of(p), p.name))


def best_epoch_of(path: Path) -> int:
    """The epoch in a best file's name (-1 when it has none)."""
    digits = path.stem.rsplit("_", 1)[-1]
    return int(digits) if digits.isdigit() else -1


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Atomically write ``state`` (see the module docstring for the keys) to ``path``."""
    assert_finite_state(state)  # a NaN weight never becomes the checkpoint a rerun resumes
    return atomic_write(path, lambda f: torch.save({"format": FORMAT, **state}, f))


def write_pointer(work_dir: str | Path, target: str | Path) -> Path:
    """Point ``work_dir/last_checkpoint`` at ``target`` (stored relative when inside work_dir)."""
    work_dir, target = Path(work_dir), Path(target)
    name = target.name if target.parent.resolve() == work_dir.resolve() else str(target.resolve())
    return atomic_write_text(work_dir / POINTER, name + "\n")


def last_checkpoint(work_dir: str | Path) -> Path | None:
    """The checkpoint ``work_dir/last_checkpoint`` names, or None when there is no pointer.

    A pointer naming a missing file is an error (rather than silently starting over)."""
    pointer = Path(work_dir) / POINTER
    if not pointer.is_file():
        return None
    name = pointer.read_text().strip()
    target = Path(name) if Path(name).is_absolute() else Path(work_dir) / name
    if not target.is_file():
        raise CheckpointError(
            f"{pointer} names {target}, which does not exist; restore it, or delete "
            f"{pointer} to start from scratch"
        )
    return target


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict; a missing, truncated, corrupt or foreign file is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointError(
            f"{path} is truncated or corrupt ({type(exc).__name__}: {str(exc)[:200]}); "
            "use an earlier epoch_N.pth"
        ) from None
    except Exception as exc:  # weights_only refuses unknown types: not one of ours
        raise CheckpointError(f"{path} is not a gen5nas checkpoint: {str(exc)[:200]}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"{path} is not a gen5nas checkpoint (format {found!r}, expected {FORMAT!r})"
        )
    return state


ResumePoint = tuple[int, int] | str | None  # (epoch, iteration), a read error, or no pointer


def check_resume_points(points: list[ResumePoint], work_dir: str | Path) -> None:
    """Refuse a distributed resume where ranks read different checkpoints (one entry per rank,
    as all-gathered): each rank reads ``last_checkpoint`` itself, so a work dir that is not
    shared would have ranks resume from different points and silently diverge."""
    if all(p == points[0] for p in points):
        return

    def shown(p: ResumePoint) -> str:
        if p is None:
            return "no checkpoint (fresh start)"
        if isinstance(p, str):
            return f"unreadable ({p[:200]})"
        return f"epoch {p[0]}, iteration {p[1]}"

    ranks = "; ".join(f"rank {r}: {shown(p)}" for r, p in enumerate(points))
    raise CheckpointError(
        f"the processes of this job found different checkpoints to resume from in {work_dir} "
        f"({ranks}); the work dir must be on a filesystem every node shares"
    )


# ---- RNG state ------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) RNG states in weights_only-loadable types."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(np.asarray(keys).copy()), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy(), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):  # a different GPU count: keep the fresh states
            torch.cuda.set_rng_state_all(state["cuda"])


# ---- what the checkpoint holds besides weights ----------------------------------------------
def make_meta(
    space: SearchSpace,
    num_classes: int,
    *,
    classes: list[str] | None = None,
    activation: str = "relu6",
    dropout: float = 0.2,
    task: str = "classification",
    model_kind: str = "supernet",
    arch: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "space": space.model_dump(mode="json", by_alias=False),
        "num_classes": num_classes,
        "classes": list(classes) if classes is not None else None,
        "activation": activation,
        "dropout": dropout,
        "task": task,
        "model_kind": model_kind,
        "arch": arch,
        "gen5nas_version": __version__,
    }


def _first_difference(a: Any, b: Any, path: str) -> tuple[str, Any, Any] | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if key not in a or key not in b:
                return (f"{path}.{key}".lstrip("."), a.get(key), b.get(key))
            found = _first_difference(a[key], b[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            found = _first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        if len(a) != len(b):
            return (f"{path} (length)", len(a), len(b))
        return None
    return None if a == b else (path.lstrip("."), a, b)


def check_same_space(meta: dict[str, Any], space: SearchSpace, source: str = "checkpoint") -> None:
    """Refuse a checkpoint trained on another search space, naming the first mismatching field."""
    expected = space.model_dump(mode="json", by_alias=False)
    # JSON-normalise the stored dict too (tuples vs lists; int keys of expand_ratio tables).
    stored = SearchSpace.model_validate(meta["space"]).model_dump(mode="json", by_alias=False)
    diff = _first_difference(stored, expected, "")
    if diff is not None:
        field, theirs, ours = diff
        raise CheckpointError(
            f"{source} was trained on a different search space: first mismatch at {field}: "
            f"checkpoint has {theirs}, the spec has {ours}"
        )


def supernet_checkpoint(path: str | Path) -> Path:
    """The checkpoint file a search or an export uses: ``path`` itself when it is a file; for a
    training work dir, its newest best file (``best_max_subnet.<metric>_epoch_N.pth``: what
    the seed searches), else the file ``last_checkpoint`` names. One rule, so search and export
    read the same weights."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        best = best_files(path)
        if best:
            return best[-1]
        found = last_checkpoint(path)
        if found is not None:
            return found
        raise CheckpointError(
            f"{path} holds no supernet checkpoint (no {BEST_STEM}.<metric>_epoch_N.pth and "
            "no last_checkpoint); train one with `gen5nas train`"
        )
    raise CheckpointError(
        f"checkpoint not found: {path} (give a .pth file or a training work "
        "dir; see spec.checkpoint / --checkpoint)"
    )


def load_supernet(path: str | Path, space: SearchSpace | None = None) -> tuple[Any, dict[str, Any]]:
    """The trained :class:`~gen5nas.supernet.Supernet` in ``path`` (eval mode, CPU) and its meta.

    ``path`` may be a checkpoint file or a training work dir (see :func:`supernet_checkpoint`).
    With ``space``, a checkpoint of another space is refused naming the first mismatch.
    BN running statistics are whatever the last calibration left: recalibrate
    (:func:`gen5nas.train.bn_calibration.recalibrate_bn`) for each subnet before evaluating it.
    """
    from gen5nas.tasks.base import get_task

    path = supernet_checkpoint(path)
    state = read_checkpoint(path)
    meta = state.get("meta") or {}
    if meta.get("model_kind", "supernet") != "supernet":
        raise CheckpointError(f"{path} holds a {meta.get('model_kind')} model, not a supernet")
    task = get_task(str(meta.get("task", "classification")), field="checkpoint")
    stored_space = SearchSpace.model_validate(meta["space"])
    if space is not None:
        check_same_space(meta, space, source=str(path))
    model = task.build_supernet(
        stored_space,
        int(meta["num_classes"]),
        activation=str(meta.get("activation", "relu6")),
        dropout=float(meta.get("dropout", 0.2)),
    )
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: weights do not fit the supernet: {str(exc)[:300]}"
        ) from None
    model.eval()
    return model, meta

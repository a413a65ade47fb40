"""The supernet a search searches: its checkpoint's meta and the search space it was trained on.

``read_supernet`` refuses a checkpoint that holds no supernet, and a spec ``searchSpace`` that is
not the checkpoint's space, before a study is touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gen5nas.errors import CheckpointError
from gen5nas.spec.search import NASSearchSpec
from gen5nas.spec.space import SearchSpace
from gen5nas.spec.spaces import load_space, named_spaces
from gen5nas.train.checkpoint import check_same_space, read_checkpoint


@dataclass(frozen=True)
class SupernetInfo:
    """What a search needs to know of the supernet it searches."""

    meta: dict[str, Any]  # the checkpoint's meta (``train.checkpoint.make_meta``)
    space: SearchSpace
    space_name: str | None  # see space_name

    @property
    def num_classes(self) -> int:
        return int(self.meta["num_classes"])

    @property
    def activation(self) -> str:
        return str(self.meta.get("activation") or "relu6")

    @property
    def task(self) -> str:
        return str(self.meta.get("task", "classification"))


def read_supernet(spec: NASSearchSpec, checkpoint: Path) -> SupernetInfo:
    meta = checkpoint_meta(checkpoint)
    space = search_space(spec, meta, checkpoint)
    return SupernetInfo(meta, space, space_name(spec, space))


def checkpoint_meta(path: Path) -> dict[str, Any]:
    meta = read_checkpoint(path).get("meta") or {}
    if meta.get("model_kind", "supernet") != "supernet":
        raise CheckpointError(f"{path} holds a {meta.get('model_kind')} model, not a supernet")
    if "space" not in meta or "num_classes" not in meta:
        raise CheckpointError(f"{path} has no search space in its meta; not a supernet")
    return dict(meta)


def search_space(spec: NASSearchSpec, meta: dict[str, Any], checkpoint: Path) -> SearchSpace:
    """The checkpoint's space; a ``searchSpace`` in the spec must be that same space."""
    stored = SearchSpace.model_validate(meta["space"])
    if spec.search_space is None:
        return stored
    space = spec.search_space.resolve()
    try:
        check_same_space(meta, space, source=str(checkpoint))
    except CheckpointError as exc:
        raise CheckpointError(f"spec.searchSpace: {exc}") from None
    return space


def space_name(spec: NASSearchSpec, space: SearchSpace) -> str | None:
    """The shipped name of ``space`` when it is one (the estimator can then build archs
    itself, and caches them across workers); None for a custom space."""
    if spec.search_space is not None and spec.search_space.name:
        return spec.search_space.name
    for name in named_spaces():
        if load_space(name) == space:
            return name
    return None

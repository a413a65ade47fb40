"""The evaluator a search worker scores archs with: the supernet, its calibration batches and
its validation batches (cached in memory, or streamed when they exceed ``evaluation.cacheMib``).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from typing import Any

from gen5nas.errors import SpecError
from gen5nas.search.settings import SearchSettings
from gen5nas.spec.space import SearchSpace

log = logging.getLogger(__name__)


def build_evaluator(
    settings: SearchSettings, space: SearchSpace, meta: dict[str, Any], cost_fn: Any
) -> Any:
    import torch

    from gen5nas.data import build_loaders
    from gen5nas.search.evaluate import Evaluator
    from gen5nas.train.bn_calibration import BatchCache
    from gen5nas.train.checkpoint import load_supernet

    spec = settings.spec
    supernet, _ = load_supernet(settings.checkpoint)
    dataset = spec.dataset
    if spec.evaluation.batch_size is not None:
        dataset = dataset.model_copy(
            update={
                "batch_size": spec.evaluation.batch_size,
                "val_batch_size": spec.evaluation.batch_size,
            }
        )
    loaders = build_loaders(
        dataset, space.max_resolution(), work_dir=settings.work_dir, seed=spec.sampler.seed
    )
    if loaders.num_classes != int(meta["num_classes"]):
        raise SpecError(
            f"the dataset has {loaders.num_classes} classes, the supernet "
            f"{meta['num_classes']}: search on the data it was trained for",
            field="dataset",
        )
    calibration = BatchCache(
        loaders.calibration(spec.evaluation.calib_batches, seed=spec.sampler.seed),
        spec.evaluation.calib_batches,
    )
    assert loaders.val is not None
    val_batches = spec.evaluation.val_batches or len(loaders.val)
    h, w = space.max_resolution()
    val_bytes = min(val_batches, len(loaders.val)) * (loaders.val.batch_size or 1) * 3 * h * w * 4
    validation: Any
    if val_bytes <= spec.evaluation.cache_mib * 2**20:
        validation = BatchCache(loaders.val, val_batches)
    else:
        log.info(
            "validation set (%.0f MiB) exceeds evaluation.cacheMib; streaming it", val_bytes / 2**20
        )
        validation = _FirstBatches(loaders.val, val_batches)
    log.info(
        "evaluator: %d calibration batches, %d validation batches (%s), %d classes",
        len(calibration),
        min(val_batches, len(loaders.val)),
        "cached" if isinstance(validation, BatchCache) else "streamed",
        loaders.num_classes,
    )
    return Evaluator(supernet, calibration, validation, cost_fn, torch.device("cpu"))


class _FirstBatches:
    def __init__(self, loader: Any, n: int) -> None:
        self.loader, self.n = loader, n

    def __iter__(self) -> Iterator[Any]:
        # islice stops before asking for batch n+1 (a loop with a break would load it).
        return itertools.islice(self.loader, self.n)

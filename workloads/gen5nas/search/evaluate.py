"""Scoring one subnet: the task's metric with inherited weights, and its hardware cost.

A worker builds one :class:`Evaluator` (:func:`build_evaluator`, from the search's settings and
the supernet checkpoint, whose task it evaluates for): the calibration batches (and the validation batches,
when they fit ``evaluation.cacheMib``; else they are streamed) are read once and reused by
every trial, so trials are comparable and no trial pays for decoding images. Per trial: the
subnet is cut out of the supernet as a static module (no weight slicing on each forward), its
BatchNorm statistics are recalibrated, and it is scored; meanwhile the estimator request for
the same arch runs in a thread.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gen5nas.data.loaders import generated_data_home
from gen5nas.errors import Gen5NasError, SpecError
from gen5nas.spec.space import Arch, SearchSpace
from gen5nas.tasks.base import Task, get_task
from gen5nas.tasks.classification import CLASSIFICATION

if TYPE_CHECKING:
    from gen5nas.search.settings import SearchSettings

log = logging.getLogger(__name__)

CostFn = Callable[[Arch], tuple[float, float]]
"""An arch -> (latency_ms, energy_mj); raises when the estimator cannot answer."""


class TrialFailed(Gen5NasError):
    """One trial could not be scored; the message is recorded as its ``fail_reason``."""


@dataclass
class Outcome:
    accuracy: float  # the task's headline metric (classification: top-1, percent)
    latency_ms: float
    energy_mj: float
    timings: dict[str, float] = field(default_factory=dict)  # calib_s, eval_s, estimate_s...
    extra: dict[str, float] = field(default_factory=dict)  # the task's extra_metrics


class ResizeInput(nn.Module):
    """Resizes the input to the subnet's resolution as the supernet's forward does (bilinear,
    no corner alignment), so batches prepared once at the largest resolution serve every arch.

    A subnet that declares ``resizes_input = True`` does this itself and is not wrapped: its
    outputs are in the pixels of the image it is fed (a detector's boxes), so it must see the
    batch's images as they are."""

    def __init__(self, model: nn.Module, resolution: Sequence[int]) -> None:
        super().__init__()
        self.model = model
        self.size = (int(resolution[0]), int(resolution[1]))

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return self.model(x)  # type: ignore[no-any-return]


class Evaluator:
    """Scores archs of one supernet; one per worker process (not shared between threads)."""

    def __init__(
        self,
        supernet: Any,
        calibration: Iterable[Any],
        validation: Iterable[Any],
        cost_fn: CostFn,
        device: torch.device | None = None,
        task: Task = CLASSIFICATION,
    ) -> None:
        self.task = task
        self.supernet = supernet
        self.calibration = calibration
        self.validation = validation
        self.cost_fn = cost_fn
        self.device = device or torch.device("cpu")
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="estimator-request")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def subnet(self, arch: Arch) -> nn.Module:
        """The static subnet of ``arch`` (taking input at any resolution) with recalibrated
        BatchNorm statistics."""
        from gen5nas.train.bn_calibration import recalibrate_bn

        model = self.task.extract(self.supernet, arch)
        if not getattr(model, "resizes_input", False):
            model = ResizeInput(model, arch.resolution)
        model = model.to(self.device)
        recalibrate_bn(model, self.calibration, device=self.device)
        return model

    def evaluate(self, arch: Arch) -> Outcome:
        """Score ``arch``; :class:`TrialFailed` (with the reason) when it cannot be scored."""
        cost = self._pool.submit(_timed, self.cost_fn, arch)
        try:
            t0 = time.perf_counter()
            model = self.subnet(arch)
            t1 = time.perf_counter()
            metrics = self.task.evaluate(model, self.validation, self.device)
            t2 = time.perf_counter()
        except Exception as exc:
            # Any error of one subnet (an IndexError of a bad arch too) fails that trial, not
            # the worker; the traceback is logged, the trial keeps the first line as its reason.
            cost.cancel()
            log.warning("subnet %s could not be evaluated", arch.summary(), exc_info=True)
            what = _first_line(exc)
            if not isinstance(exc, Gen5NasError) and what != type(exc).__name__:
                what = f"{type(exc).__name__}: {what}"
            raise TrialFailed(f"subnet {arch.summary()} could not be evaluated: {what}") from exc
        if metrics["images"] == 0:
            raise TrialFailed("no validation image could be scored (check the dataset)")
        try:
            (latency_ms, energy_mj), estimate_s = cost.result()
        except Exception as exc:
            raise TrialFailed(f"estimator: {_first_line(exc)}") from exc
        timings = {
            "calib_s": t1 - t0,
            "eval_s": t2 - t1,
            "estimate_s": estimate_s,
            "estimate_wait_s": time.perf_counter() - t2,  # what the thread did not hide
        }
        return Outcome(
            metrics[self.task.metric.key],
            float(latency_ms),
            float(energy_mj),
            timings,
            extra={key: metrics[key] for key in self.task.extra_metrics},
        )


def _timed(fn: CostFn, arch: Arch) -> tuple[tuple[float, float], float]:
    t0 = time.perf_counter()
    out = fn(arch)
    return out, time.perf_counter() - t0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def build_evaluator(
    settings: SearchSettings, space: SearchSpace, meta: dict[str, Any], cost_fn: CostFn
) -> Evaluator:
    """The worker's :class:`Evaluator`: the supernet of ``settings.checkpoint``, its task's
    loaders at the space's largest resolution, the calibration batches (cached) and the
    validation batches (cached when they fit ``evaluation.cacheMib``, else streamed)."""
    from gen5nas.train.bn_calibration import BatchCache
    from gen5nas.train.checkpoint import load_supernet

    spec = settings.spec
    task = get_task(str(meta.get("task", "classification")), field="checkpoint")
    supernet, _ = load_supernet(settings.checkpoint)
    dataset = spec.dataset
    if spec.evaluation.batch_size is not None:
        dataset = dataset.model_copy(
            update={
                "batch_size": spec.evaluation.batch_size,
                "val_batch_size": spec.evaluation.batch_size,
            }
        )
    data_home = generated_data_home(dataset, Path(settings.work_dir), Path(settings.checkpoint))
    loaders = task.build_loaders(
        dataset, space.max_resolution(), work_dir=data_home, seed=spec.sampler.seed
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
    validation: Iterable[Any]
    if val_bytes <= spec.evaluation.cache_mib * 2**20:
        validation = BatchCache(loaders.val, val_batches)
    else:
        log.info(
            "validation set (%.0f MiB) exceeds evaluation.cacheMib; streaming it", val_bytes / 2**20
        )
        validation = FirstBatches(loaders.val, val_batches)
    log.info(
        "evaluator: %d calibration batches, %d validation batches (%s), %d classes",
        len(calibration),
        min(val_batches, len(loaders.val)),
        "cached" if isinstance(validation, BatchCache) else "streamed",
        loaders.num_classes,
    )
    return Evaluator(supernet, calibration, validation, cost_fn, torch.device("cpu"), task)


class FirstBatches:
    """The first ``n`` batches of ``loader``, read again on every pass (streamed validation)."""

    def __init__(self, loader: Iterable[Any], n: int) -> None:
        self.loader, self.n = loader, n
        self.dataset = getattr(loader, "dataset", None)  # the task may need its annotations

    def __iter__(self) -> Iterator[Any]:
        # islice stops before asking for batch n+1 (a loop with a break would load it).
        return itertools.islice(self.loader, self.n)

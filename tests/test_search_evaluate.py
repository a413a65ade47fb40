"""The search's evaluator: any error of one subnet fails that trial only, the estimator request
overlaps the accuracy evaluation, and the validation batches are cached (or streamed) as
``evaluation.cacheMib`` says."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState
from searchkit import tiny_space
from torch import nn

from gen5nas.data import imagefolder
from gen5nas.data.imagefolder import Batch
from gen5nas.search.checkpoint_space import checkpoint_meta
from gen5nas.search.evaluate import Evaluator, build_evaluator
from gen5nas.search.results import REASON_ATTR
from gen5nas.search.runner import Worker, seed_extremes
from gen5nas.search.settings import SearchSettings
from gen5nas.search.study import default_storage_url, open_storage, open_study
from gen5nas.spec import Arch
from gen5nas.spec.search import NASSearchSpec
from gen5nas.supernet import Supernet
from gen5nas.train.bn_calibration import BatchCache

HANDSHAKE_S = 60.0  # only reached when the two sides do not overlap (the test then fails)


def _batches(n: int, seed: int) -> list[Batch]:
    g = torch.Generator().manual_seed(seed)
    return [
        Batch(torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g), 0)
        for _ in range(n)
    ]


def _fixed_cost(arch: Arch) -> tuple[float, float]:
    h, w = arch.resolution
    return h * w / 1000.0, h * w / 500.0


class _Buggy(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise TypeError("'NoneType' object is not subscriptable")


class _BuggyOnSmallInputs(Evaluator):
    """Subnets at 24x24 hit a bug in their forward (a TypeError, not a RuntimeError)."""

    def subnet(self, arch: Arch) -> nn.Module:
        return _Buggy() if arch.resolution == (24, 24) else super().subnet(arch)


def test_an_unexpected_error_fails_the_trial_and_the_search_goes_on(tmp_path: Path) -> None:
    space = tiny_space()
    torch.manual_seed(0)
    supernet = Supernet(space, 10).eval()
    evaluator = _BuggyOnSmallInputs(supernet, _batches(1, 0), _batches(1, 1), _fixed_cost)
    study = open_study(
        open_storage(default_storage_url(tmp_path)),
        "s",
        optuna.samplers.RandomSampler(seed=0),
        {"space": "tiny", "cost_key": "latency", "task": "classification"},
    )
    seed_extremes(study, space)  # the min subnet (24x24) fails first thing after the max
    try:
        report = Worker(
            study, space, evaluator.evaluate, "latency", 4, max_consecutive_failures=50
        ).run()
    finally:
        evaluator.close()
    failed = study.get_trials(states=[TrialState.FAIL])
    assert report.completed == 4 and report.failed == len(failed) >= 1
    assert len(study.get_trials(states=[TrialState.COMPLETE])) == 4
    for t in failed:
        assert t.params  # a real subnet, scored and failed, not a worker crash
        reason = t.user_attrs[REASON_ATTR]
        assert "could not be evaluated: TypeError: 'NoneType' object" in reason
    assert all(
        t.user_attrs["arch"]["resolution"] != [24, 24]
        for t in study.get_trials(states=[TrialState.COMPLETE])
    )


class _HandshakeValidation:
    """Validation batches that, when iterated, wait until the estimator request is running."""

    def __init__(self, batches: list[Batch], cost_started: threading.Event) -> None:
        self.batches, self.cost_started = batches, cost_started
        self.iterated = threading.Event()
        self.saw_cost_running = False

    def __iter__(self) -> Iterator[Batch]:
        self.iterated.set()
        self.saw_cost_running = self.cost_started.wait(HANDSHAKE_S)
        return iter(self.batches)


def test_the_estimator_request_runs_while_the_subnet_is_scored() -> None:
    # Each side waits for the other: run one after the other (either order), one side waits
    # in vain and records it; run together, both see the other at once.
    space = tiny_space()
    torch.manual_seed(0)
    cost_started = threading.Event()
    validation = _HandshakeValidation(_batches(1, 1), cost_started)
    seen: list[bool] = []

    def cost(arch: Arch) -> tuple[float, float]:
        cost_started.set()
        seen.append(validation.iterated.wait(HANDSHAKE_S))
        return _fixed_cost(arch)

    evaluator = Evaluator(Supernet(space, 10).eval(), _batches(1, 0), validation, cost)
    try:
        outcome = evaluator.evaluate(space.min())
    finally:
        evaluator.close()
    assert seen == [True]  # the cost function waited while the validation was iterated
    assert validation.saw_cost_running
    assert (outcome.latency_ms, outcome.energy_mj) == _fixed_cost(space.min())


# ---- build_evaluator: what is read once and what is read per trial ----------------------------
@pytest.fixture
def image_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every image file the loaders decode (the real decoder, counted)."""
    reads: list[str] = []
    real = imagefolder.load_rgb

    def counting(path: str) -> Any:
        reads.append(path)
        return real(path)

    monkeypatch.setattr(imagefolder, "load_rgb", counting)
    return reads


def _evaluator(tmp_path: Path, digits: Path, checkpoint: Path, **evaluation: Any) -> Evaluator:
    spec = NASSearchSpec.model_validate(
        {
            "dataset": {
                "kind": "imagefolder",
                "path": str(digits),
                "batchSize": 16,
                "numWorkers": 0,
            },
            "evaluation": {"calibBatches": 2, "valBatches": 2, **evaluation},
        }
    )
    settings = SearchSettings(
        spec=spec,
        checkpoint=str(checkpoint),
        work_dir=str(tmp_path),
        storage_url=default_storage_url(tmp_path),
        study_name="t",
    )
    meta = checkpoint_meta(checkpoint)
    return build_evaluator(settings, tiny_space(), meta, _fixed_cost)  # type: ignore[no-any-return]


def test_validation_batches_are_read_once_and_reused(
    tmp_path: Path, digits: Path, checkpoint: Path, image_reads: list[str]
) -> None:
    evaluator = _evaluator(tmp_path, digits, checkpoint)
    try:
        assert isinstance(evaluator.validation, BatchCache)
        assert len(evaluator.validation) == 2
        built = len(image_reads)
        assert built >= 2 * 16 + 2 * 16  # calibration + validation, read at build time
        space = tiny_space()
        first = evaluator.evaluate(space.min())
        second = evaluator.evaluate(space.max())
        assert len(image_reads) == built  # no trial reads the dataset again
        assert first.accuracy >= 0.0 and second.accuracy >= 0.0
    finally:
        evaluator.close()


def test_with_no_cache_validation_is_streamed_and_val_batches_is_respected(
    tmp_path: Path, digits: Path, checkpoint: Path, image_reads: list[str]
) -> None:
    val_images = len(list((digits / "val").rglob("*.png")))
    assert val_images > 2 * 16  # so that stopping after valBatches is visible
    evaluator = _evaluator(tmp_path, digits, checkpoint, cacheMib=0)
    try:
        assert not isinstance(evaluator.validation, BatchCache)
        built = len(image_reads)
        assert built == 2 * 16  # calibration only: validation is read by each trial
        assert sum(1 for _ in evaluator.validation) == 2
        image_reads.clear()
        space = tiny_space()
        evaluator.evaluate(space.min())
        assert len(image_reads) == 2 * 16  # valBatches batches, not the whole val split
        evaluator.evaluate(space.min())
        assert len(image_reads) == 2 * 2 * 16  # and again for the next trial
    finally:
        evaluator.close()

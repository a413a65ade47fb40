"""Operator test helpers (not a test module): studies and trials in the shapes
the search step writes, so the operator is tested against what it will really read."""

from __future__ import annotations

import random
from pathlib import PurePosixPath
from typing import Any

from gen5nas.search import outputs as search_outputs
from gen5nas.spec import Arch, load_space


def sample_arch(seed: int) -> Arch:
    return load_space("mobilenetv2_tiny").sample(random.Random(seed))


def trial_user_attrs(arch: Arch, accuracy: float, latency_ms: float, energy_mj: float) -> dict:
    """A COMPLETE trial's user attrs as ``gen5nas.search.runner.Worker._objective`` sets them
    (the runner imports torch, so its shapes are copied here from the same Arch methods)."""
    return {
        "arch": arch.to_yaml_dict(),
        "arch_summary": arch.summary(),
        "worker": "worker-0",
        "accuracy_top1": accuracy,
        "latency_ms": latency_ms,
        "energy_mj": energy_mj,
    }


def outputs_attr(work_dir: str) -> dict[str, str]:
    """The study user attr ``outputs`` the search step sets after writing its outputs."""
    work = PurePosixPath(work_dir)
    return {
        "paretoHtml": str(work / search_outputs.HTML_NAME),
        "paretoPng": str(work / search_outputs.PNG_NAME),
        "subnetsCsv": str(work / search_outputs.CSV_NAME),
        "studyPkl": str(work / search_outputs.PICKLE_NAME),
        "fixSubnets": str(work / search_outputs.FIX_SUBNETS),
    }


def write_study(dsn: str, study_name: str, n: int, work_dir: str | None = None) -> list[Arch]:
    """A real study with ``n`` COMPLETE trials (trial 2 dominated) in the search step's layout;
    with ``work_dir``, also the ``outputs`` attr the search step sets when it is done.
    Returns each trial's arch."""
    import optuna

    from gen5nas.search.study import DIRECTIONS, open_storage

    study = optuna.create_study(
        storage=open_storage(dsn), study_name=study_name, directions=list(DIRECTIONS),
        load_if_exists=True,
    )  # fmt: skip
    archs = []
    for i in range(n):
        acc, lat = 50.0 + 5 * i, 1.0 + 0.5 * i + (0.9 if i == 2 else 0.0)
        archs.append(sample_arch(i))
        attrs: dict[str, Any] = trial_user_attrs(archs[-1], acc, lat, lat * 2)
        study.add_trial(optuna.trial.create_trial(values=[acc, lat], user_attrs=attrs))
    if work_dir is not None:
        study.set_user_attr("outputs", outputs_attr(work_dir))
    return archs

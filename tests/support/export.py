"""Helpers for the export/retrain tests: the digits tree, a supernet saved through the
checkpoint API, an Optuna study with trials in chosen states, and a SubnetExport spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from gen5nas.spec import Arch, SearchSpace, load_space
from gen5nas.spec.export import SubnetExportSpec

SPACE = "mobilenetv2_tiny"


def tiny_space() -> SearchSpace:
    return load_space(SPACE)


def save_supernet(path: Path, seed: int = 0, classes: list[str] | None = None) -> Path:
    """A freshly initialised tiny supernet, saved as training would save it."""
    from gen5nas.supernet import Supernet
    from gen5nas.train.checkpoint import make_meta, save_checkpoint

    space = tiny_space()
    classes = classes or [str(i) for i in range(10)]
    torch.manual_seed(seed)
    net = Supernet(space, len(classes))
    state = {
        "model": net.state_dict(),
        "epoch": 0,
        "iteration": 0,
        "meta": make_meta(space, len(classes), classes=classes),
    }
    return save_checkpoint(state, path)


VAL_SAMPLES = 128  # a fixed subset of the 355 digits val images: seconds per evaluation


def dataset(root: Path, batch: int = 32) -> dict[str, Any]:
    return {
        "kind": "imagefolder",
        "path": str(root),
        "batchSize": batch,
        "numWorkers": 0,
        "maxValSamples": VAL_SAMPLES,
    }


def export_spec(checkpoint: Path, data_root: Path, **fields: Any) -> SubnetExportSpec:
    data: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "dataset": dataset(data_root),
        "bnCalibrationBatches": 2,
    }
    data.update(fields)
    return SubnetExportSpec.model_validate(data)


def arch_dict(arch: Arch) -> dict[str, Any]:
    return arch.to_yaml_dict()


def make_study(
    url: str, space: SearchSpace, trials: list[tuple[Arch, str]], name: str = "s"
) -> Any:
    """A two-objective study (as gen5nas search creates it) with one trial per (arch, state)."""
    import optuna
    from optuna.trial import TrialState, create_trial

    from gen5nas.search.encoding import arch_to_params, distributions

    study = optuna.create_study(study_name=name, storage=url, directions=["maximize", "minimize"])
    dists = distributions(space)
    for i, (arch, state) in enumerate(trials):
        st = TrialState[state]
        trial = create_trial(
            params=arch_to_params(space, arch),
            distributions=dists,
            values=[50.0 + i, 1.0 + i] if st == TrialState.COMPLETE else None,
            state=st,
            user_attrs={"arch": arch.summary(), "accuracy_top1": 50.0 + i},
        )
        study.add_trial(trial)
    return study


def ort_top1(onnx_path: Path, batches: Any, static_batch: int | None) -> tuple[float, int]:
    """Top-1 (percent) of an ONNX file over a loader, run by onnxruntime alone."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    hits = total = 0
    for batch in batches:
        images = batch.images.numpy().astype(np.float32)
        targets = batch.targets.numpy()
        if static_batch is None:
            logits = session.run(None, {name: images})[0]
        else:
            logits = np.concatenate(
                [session.run(None, {name: images[i : i + 1]})[0] for i in range(len(images))]
            )
        hits += int((logits.argmax(1) == targets).sum())
        total += len(targets)
    return 100.0 * hits / max(1, total), total

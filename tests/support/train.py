"""Helpers for the training tests: a tiny SupernetTraining manifest and a CLI subprocess."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def tiny_spec(data_path: Path, **overrides: Any) -> dict[str, Any]:
    """The tiny space on a synthetic ImageFolder tree: seconds per epoch on one CPU core."""
    spec: dict[str, Any] = {
        "searchSpace": {"name": "mobilenetv2_tiny"},
        "dataset": {"kind": "imagefolder", "path": str(data_path), "batchSize": 8, "numWorkers": 0},
        "optimizer": {"lr": 0.05},
        "schedule": {"epochs": 3, "warmupEpochs": 1, "maxItersPerEpoch": 3, "logIntervalIters": 1},
        "bnCalibrationBatches": 1,
        "deterministic": True,
        "seed": 3,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return copy.deepcopy(spec)


def write_manifest(path: Path, spec: dict[str, Any], name: str = "tiny") -> Path:
    doc = {
        "apiVersion": "gen5nas.io/v1alpha1",
        "kind": "SupernetTraining",
        "metadata": {"name": name},
        "spec": spec,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    return env


def gen5nas_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "gen5nas", *args]


def run_gen5nas(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        gen5nas_cmd(*args),
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=timeout,
        cwd=REPO,
    )

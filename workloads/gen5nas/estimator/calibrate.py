"""Calibrating an analytical profile against measured latencies.

The fit adjusts, in log space, the per-op-kind efficiency factors of the kinds the training
models use, the per-layer overhead and the achievable DRAM bandwidth fraction, minimising the
squared log error of total latency (relative error, so small and large models weigh alike), with
a weak pull towards the starting values so that few models cannot push unused knobs to extremes.
Fidelity is reported on held-out models before and after.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from gen5nas.estimator.analytical import total_latency_ms
from gen5nas.estimator.engine import EstimatorEngine
from gen5nas.estimator.fidelity import Fidelity, fidelity
from gen5nas.estimator.onnx_graph import KINDS, GraphWork
from gen5nas.estimator.profiles import EFFICIENCY_KINDS, HardwareProfile

log = logging.getLogger(__name__)


@dataclass
class Sample:
    name: str
    work: GraphWork
    measured_ms: float


@dataclass
class CalibrationReport:
    before: HardwareProfile
    after: HardwareProfile
    fitted: list[str]
    train: tuple[Fidelity, Fidelity]  # (before, after)
    held_out: tuple[Fidelity, Fidelity] | None
    rows: list[tuple[str, str, float, float, float]]  # (split, model, measured, before, after)

    def table(self) -> str:
        from gen5nas.estimator.fidelity import format_table

        rows = [("train, before", self.train[0]), ("train, after", self.train[1])]
        if self.held_out:
            rows += [("held-out, before", self.held_out[0]), ("held-out, after", self.held_out[1])]
        return format_table(rows)


def measure(
    models: Sequence[tuple[str, bytes]],
    engine: EstimatorEngine,
    measure_profile: str = "cpu-ort",
    progress: Callable[[str], None] | None = None,
    passes: int = 2,
) -> list[Sample]:
    """Measure each model with the onnxruntime backend (keeping its graph analysis for the fit).

    Each model is measured in ``passes`` interleaved passes and the smallest median is kept:
    on a shared machine another process's burst inflates a whole pass, rarely two."""
    best = [float("inf")] * len(models)
    t0 = time.perf_counter()
    for p in range(max(passes, 1)):
        for i, (name, data) in enumerate(models):
            est = engine.estimate(
                data, profile=measure_profile, backend="onnxruntime", with_layers=False
            )
            best[i] = min(best[i], float(est.latency_ms or 0.0))
            if progress:
                done = p * len(models) + i + 1
                rate = done / (time.perf_counter() - t0)
                progress(
                    f"pass {p + 1}: measured {i + 1}/{len(models)} {name}: "
                    f"{est.latency_ms:.3f} ms ({rate:.2f} models/s)"
                )
    return [
        Sample(name, engine.analyze(data), ms)
        for (name, data), ms in zip(models, best, strict=True)
    ]


def predict(profile: HardwareProfile, samples: Sequence[Sample]) -> list[float]:
    return [total_latency_ms(s.work, profile.params) for s in samples]


def fit(
    profile: HardwareProfile, train: Sequence[Sample], prior_weight: float = 0.05
) -> tuple[HardwareProfile, list[str]]:
    from scipy.optimize import least_squares

    if not train:
        raise ValueError("no training models to calibrate on")
    used = set()
    for s in train:
        for kind_i in np.unique(s.work.kind_index[(s.work.macs > 0) | (s.work.vector_ops > 0)]):
            used.add(KINDS[kind_i])
    keys = [f"efficiency.{k}" for k in EFFICIENCY_KINDS if k in used]
    keys += ["layer_overhead_us", "dram_efficiency"]
    measured = np.array([s.measured_ms for s in train])
    base = dict(profile.params)
    for k in keys:
        base.setdefault(k, 1.0)
    # Start from the profile rescaled by the median ratio: the log-space fit then only shapes.
    ratio = float(np.median(measured / np.array([total_latency_ms(s.work, base) for s in train])))
    start = {k: base[k] * (ratio if k == "layer_overhead_us" else 1.0 / ratio) for k in keys}
    theta0 = np.log([start[k] for k in keys])
    prior = np.log([base[k] for k in keys])

    def params_of(theta: np.ndarray) -> dict[str, float]:
        return {**base, **{k: float(v) for k, v in zip(keys, np.exp(theta), strict=True)}}

    def residuals(theta: np.ndarray) -> np.ndarray:
        p = params_of(theta)
        pred = np.array([total_latency_ms(s.work, p) for s in train])
        return np.concatenate([np.log(pred / measured), prior_weight * (theta - prior)])

    lo = np.log([1e-4] * len(keys))
    hi = np.log([1e4 if k == "layer_overhead_us" else 10.0 for k in keys])
    result = least_squares(residuals, np.clip(theta0, lo + 1e-9, hi - 1e-9), bounds=(lo, hi))
    fitted = params_of(result.x)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    sources = dict(profile.sources)
    for k in keys:
        sources[k] = (
            f"calibrated {stamp}: fitted to {len(train)} models measured with onnxruntime on "
            f"{platform.node() or 'this machine'} ({platform.machine()}); was {base[k]:.6g}"
        )
    calibrated = dataclasses.replace(
        profile, params={k: float(v) for k, v in fitted.items()}, sources=sources
    )
    return calibrated, keys


def calibrate(
    profile: HardwareProfile,
    train: Sequence[Sample],
    held_out: Sequence[Sample] = (),
    name: str | None = None,
) -> CalibrationReport:
    after, keys = fit(profile, train)
    if name:
        after = dataclasses.replace(after, name=name)
    rows = []
    for split, samples in (("train", train), ("held-out", held_out)):
        b, a = predict(profile, samples), predict(after, samples)
        rows += [
            (split, s.name, s.measured_ms, pb, pa) for s, pb, pa in zip(samples, b, a, strict=True)
        ]
    tm = [s.measured_ms for s in train]
    train_fid = (fidelity(predict(profile, train), tm), fidelity(predict(after, train), tm))
    held_fid = None
    if held_out:
        hm = [s.measured_ms for s in held_out]
        held_fid = (
            fidelity(predict(profile, held_out), hm),
            fidelity(predict(after, held_out), hm),
        )
    return CalibrationReport(profile, after, keys, train_fid, held_fid, rows)

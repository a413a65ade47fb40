"""Calibrating an analytical profile against measured latencies.

The fit adjusts, in log space, the per-op-kind efficiency factors of the kinds the training
models use, the per-layer overhead and the achievable DRAM bandwidth fraction, minimising the
log error of total latency (relative error, so small and large models weigh alike; a robust
loss, so one disturbed measurement does not drag it), with a weak pull towards the starting values so that
few models cannot push unused knobs to extremes. Fitted efficiencies stay in (0, 1]; a peak the
measurements exceed is raised and reported. Fidelity is reported on held-out models before and
after.
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
from gen5nas.estimator.graph_work import GraphWork
from gen5nas.estimator.op_kinds import COMPUTE_KINDS, KINDS
from gen5nas.estimator.profiles import EFFICIENCY_KINDS, HardwareProfile, efficiency_of

log = logging.getLogger(__name__)
OVERHEADS = ("output_overhead_macs", "layer_overhead_us")  # not utilisations: no bound at 1


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
    notes: list[str] = dataclasses.field(default_factory=list)  # peaks raised, bounds hit

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
    passes: int = 3,
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
    return [total_latency_ms(s.work, profile.params, profile.fusion) for s in samples]


# A kxk dense conv kind with less than this share of the training models' MACs (MobileNets:
# only the 3-channel stem) cannot tell its efficiency from the 1x1 convs': the two are tied.
MIN_SEPARATE_CONV_SHARE = 0.15


def fitted_keys(profile: HardwareProfile, train: Sequence[Sample]) -> list[str]:
    """The knobs the training models can inform: the efficiency of each op kind that does work
    in them (not folded away by the profile's fusion), the per-output and per-layer overheads,
    and the DRAM bandwidth fraction. "efficiency.conv" stands for pwconv too when tied."""
    work = np.zeros(len(KINDS))
    for s in train:
        busy = ((s.work.macs > 0) | (s.work.vector_ops > 0)) & ~s.work.fused_mask(profile.fusion)
        np.add.at(work, s.work.kind_index[busy], (s.work.macs + s.work.vector_ops)[busy])
    used = {KINDS[i] for i in np.flatnonzero(work)}
    conv, pw = work[KINDS.index("conv")], work[KINDS.index("pwconv")]
    if pw > 0 and conv < MIN_SEPARATE_CONV_SHARE * (conv + pw):
        used = (used - {"pwconv"}) | {"conv"}
    keys = [f"efficiency.{k}" for k in EFFICIENCY_KINDS if k in used]
    return [*keys, "output_overhead_macs", "layer_overhead_us", "dram_efficiency"]


def fit(
    profile: HardwareProfile,
    train: Sequence[Sample],
    prior_weight: float = 0.05,
    keep_peaks: bool = False,
) -> tuple[HardwareProfile, list[str], list[str]]:
    """Fit ``profile`` to ``train``; returns (calibrated profile, fitted keys, notes).

    Well-posed by construction: every knob is a positive scale fitted in log space, the
    residuals are log(predicted / measured) (relative error: a 1 ms and a 20 ms model weigh
    alike) under a robust loss (one model measured during another process's burst does not
    drag the fit), and a weak prior keeps a knob the data barely informs near its start.
    Efficiencies stay utilisations in (0, 1]: when the data ask for more than the profile's
    peak, the peak (mac_units, vector_ops_per_cycle, dram_bandwidth_gbs) is raised instead and
    reported, or, with ``keep_peaks`` (a datasheet peak), the efficiency stops at 1."""
    from scipy.optimize import least_squares

    if not train:
        raise ValueError("no training models to calibrate on")
    keys = fitted_keys(profile, train)
    measured = np.array([s.measured_ms for s in train])
    base = dict(profile.params)
    for k in keys:
        if k == "output_overhead_macs":  # absent = 0; a log-space knob needs a positive start
            base.setdefault(k, 8.0)
        base.setdefault(k, efficiency_of(base, k.removeprefix("efficiency.")))
    fusion = profile.fusion

    def predicted(p: dict[str, float]) -> np.ndarray:
        return np.array([total_latency_ms(s.work, p, fusion) for s in train])

    # Start from the profile rescaled by the median ratio: the log-space fit then only shapes.
    ratio = float(np.median(measured / predicted(base)))
    start = {k: base[k] * (ratio if k == "layer_overhead_us" else 1.0 / ratio) for k in keys}
    if "output_overhead_macs" in start:  # a work count, not a rate: not rescaled
        start["output_overhead_macs"] = base["output_overhead_macs"]
    prior = np.log([base[k] for k in keys])
    lo = np.log([1e-4] * len(keys))
    hi = np.log([1.0 if keep_peaks and k not in OVERHEADS else 1e4 for k in keys])

    tied = "efficiency.pwconv" not in keys and "efficiency.conv" in keys

    def params_of(theta: np.ndarray) -> dict[str, float]:
        p = {**base, **{k: float(v) for k, v in zip(keys, np.exp(theta), strict=True)}}
        if tied:
            p["efficiency.pwconv"] = p["efficiency.conv"]
        return p

    def residuals(theta: np.ndarray) -> np.ndarray:
        pred = predicted(params_of(theta))
        return np.concatenate([np.log(pred / measured), prior_weight * (theta - prior)])

    theta0 = np.clip(np.log([start[k] for k in keys]), lo + 1e-9, hi - 1e-9)
    # Soft-L1 first (convex near the optimum, so it gets there from a rough start), then Cauchy
    # from there: a measurement off by 2x (a burst on a shared machine) then weighs next to
    # nothing, while ordinary noise (~10%, the f_scale) keeps its full say.
    result = least_squares(residuals, theta0, bounds=(lo, hi), loss="soft_l1", f_scale=0.1)
    result = least_squares(residuals, result.x, bounds=(lo, hi), loss="cauchy", f_scale=0.1)
    fitted, notes = _as_utilisations(params_of(result.x), keys)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    sources = dict(profile.sources)
    for k in fitted:
        if k in keys or fitted[k] != profile.params.get(k):
            was = profile.params.get(k)
            sources[k] = (
                f"calibrated {stamp}: fitted to {len(train)} models measured with onnxruntime on "
                f"{platform.node() or 'this machine'} ({platform.machine()}); was "
                + (f"{was:.6g}" if was is not None else "unset")
            )
    if keep_peaks:
        notes += [f"{k} stopped at 1 (its bound)" for k in keys if np.isclose(fitted[k], 1.0)]
    calibrated = dataclasses.replace(
        profile, params={k: float(v) for k, v in fitted.items()}, sources=sources
    )
    return calibrated, keys, notes


def _as_utilisations(
    params: dict[str, float], keys: Sequence[str]
) -> tuple[dict[str, float], list[str]]:
    """Rewrite fitted efficiencies above 1 as a higher peak times efficiencies <= 1; the
    predictions do not change (peak x efficiency is what the model uses)."""
    p = dict(params)
    notes: list[str] = []
    groups = (
        ("mac_units", [k for k in EFFICIENCY_KINDS if k in COMPUTE_KINDS]),
        ("vector_ops_per_cycle", [k for k in EFFICIENCY_KINDS if k not in COMPUTE_KINDS]),
    )
    for peak, kinds in groups:
        effs = {k: efficiency_of(p, k) for k in kinds if f"efficiency.{k}" in keys}
        scale = max(effs.values(), default=1.0)
        if scale > 1.0:
            old = p[peak]
            p[peak] = old * scale
            for k in kinds:  # every kind of the group, fitted or not, keeps its product
                p[f"efficiency.{k}"] = efficiency_of(params, k) / scale
            notes.append(
                f"{peak} raised from {old:.6g} to {p[peak]:.6g}: the measured throughput "
                f"exceeds the profile's peak (check it if it is a datasheet figure)"
            )
    if p["dram_efficiency"] > 1.0:
        old = p["dram_bandwidth_gbs"]
        p["dram_bandwidth_gbs"] = old * p["dram_efficiency"]
        p["dram_efficiency"] = 1.0
        notes.append(
            f"dram_bandwidth_gbs raised from {old:.6g} to {p['dram_bandwidth_gbs']:.6g}: the "
            f"measured bandwidth exceeds the profile's peak"
        )
    return p, notes


def calibrate(
    profile: HardwareProfile,
    train: Sequence[Sample],
    held_out: Sequence[Sample] = (),
    name: str | None = None,
    keep_peaks: bool = False,
) -> CalibrationReport:
    after, keys, notes = fit(profile, train, keep_peaks=keep_peaks)
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
    return CalibrationReport(profile, after, keys, train_fid, held_fid, rows, notes)

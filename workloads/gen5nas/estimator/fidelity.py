"""How well predicted latencies track measured ones: the figures a hardware team asks for.

MAPE (mean absolute percentage error), the share of models within +-10% (nn-Meter's headline
figure), and rank agreement (Kendall tau, Spearman rho): a NAS needs the ranking right even when
absolute numbers are off.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Fidelity:
    n: int
    mape: float  # percent
    within_10pct: float  # fraction of models, 0..1
    kendall_tau: float
    spearman_rho: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def fidelity(predicted: Sequence[float], measured: Sequence[float]) -> Fidelity:
    from scipy import stats

    p = np.asarray(predicted, dtype=float)
    m = np.asarray(measured, dtype=float)
    if p.shape != m.shape or p.size == 0:
        raise ValueError(f"need equal, non-empty lists (got {p.size} predicted, {m.size} measured)")
    rel = np.abs(p - m) / m
    if p.size >= 2 and np.ptp(p) > 0 and np.ptp(m) > 0:
        tau = float(stats.kendalltau(p, m).statistic)
        rho = float(stats.spearmanr(p, m).statistic)
    else:
        tau = rho = math.nan  # undefined for one model or constant values
    return Fidelity(int(p.size), float(rel.mean() * 100), float((rel <= 0.10).mean()), tau, rho)


def format_table(rows: Sequence[tuple[str, Fidelity]]) -> str:
    lines = [f"{'':32s} {'n':>4s} {'MAPE %':>8s} {'within10%':>9s} {'tau':>6s} {'rho':>6s}"]
    for label, f in rows:
        lines.append(
            f"{label:32s} {f.n:4d} {f.mape:8.1f} {f.within_10pct * 100:8.0f}% "
            f"{f.kendall_tau:6.3f} {f.spearman_rho:6.3f}"
        )
    return "\n".join(lines)

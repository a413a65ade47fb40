"""Running sums of an epoch for the trainer's log line: per-pass losses, images, rate, ETA."""

from __future__ import annotations

import math
import time
from datetime import timedelta

from torch import Tensor

from gen5nas.train.sandwich import StepOutput


class EpochStats:
    """Running sums for the log line: per-pass losses, images, wall time."""

    def __init__(self) -> None:
        self.losses: dict[str, Tensor] = {}
        self.steps = 0
        self.images = 0
        self.skipped = 0
        self.start = time.perf_counter()

    def add(self, out: StepOutput, images: int, skipped: int) -> None:
        for name, value in out.losses.items():
            self.losses[name] = self.losses.get(name, 0) + value.float()
        self.steps += 1
        self.images += images
        self.skipped += skipped

    def mean_losses(self) -> dict[str, float]:
        return {k: float(v) / max(1, self.steps) for k, v in self.losses.items()}

    def rate(self) -> float:
        return self.images / max(1e-9, time.perf_counter() - self.start)

    def postfix(self) -> dict[str, str]:
        """The progress bar's figures."""
        losses = {k: f"{v:.3f}" for k, v in self.mean_losses().items()}
        return {**losses, "img/s": f"{self.rate():.0f}"}

    def line(self, lr: float, iters_left_epoch: int, iters_left_total: int) -> str:
        """The log line's figures: losses, lr, rate and the ETAs at this epoch's pace."""
        sec_per_iter = (time.perf_counter() - self.start) / max(1, self.steps)
        losses = " ".join(f"{k} {v:.4f}" for k, v in self.mean_losses().items())
        return (
            f"{losses} | lr {lr:.4g} | {self.rate():.0f} img/s | eta epoch "
            f"{fmt_eta(iters_left_epoch * sec_per_iter)}, total "
            f"{fmt_eta(iters_left_total * sec_per_iter)}"
        )


def fmt_eta(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds))) if math.isfinite(seconds) else "?"

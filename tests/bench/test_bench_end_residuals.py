"""The ranking bench's residuals at the sandwich's ends: how far a proxy over-rates the max and
min subnets against the trend of the other rows."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from bench_ranking import end_residuals

TRUTH = [70.0, 40.0, 45.0, 50.0, 52.0, 55.0, 58.0, 60.0, 63.0, 66.0]


def test_a_proxy_on_the_line_leaves_no_residual_whatever_its_scale() -> None:
    proxy = [0.5 * t + 3.0 for t in TRUTH]
    assert end_residuals(proxy, TRUTH) == pytest.approx({"max": 0.0, "min": 0.0}, abs=1e-9)


def test_a_min_subnet_rated_too_high_gets_a_negative_residual() -> None:
    proxy = list(TRUTH)
    proxy[1] += 8.0  # inherited 8 points above where its stand-alone score puts it
    r = end_residuals(proxy, TRUTH)
    assert r["min"] < -5.0
    assert abs(r["max"]) < abs(r["min"])
    proxy[0] -= 4.0  # and a max subnet rated too low: positive
    assert end_residuals(proxy, TRUTH)["max"] > 2.0

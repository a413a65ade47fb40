"""The ranking bench's noise ceiling: a perfect proxy's expected score against the seeds' mean."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from bench_ranking import correlations, noise_ceiling, proxy_ranking


def _runs(truth: np.ndarray, sd: float, seeds: int, rng: np.random.Generator) -> dict[int, list]:
    return {s: (truth + rng.normal(0.0, sd, truth.size)).tolist() for s in range(seeds)}


def test_noiseless_runs_leave_a_perfect_ceiling() -> None:
    per_seed = {0: [1.0, 3.0, 2.0, 5.0], 1: [1.0, 3.0, 2.0, 5.0]}
    assert noise_ceiling(correlations, per_seed)["kendall_tau"] == pytest.approx(1.0)


def test_the_ceiling_matches_the_score_of_the_true_values_it_estimates() -> None:
    rng = np.random.default_rng(1)
    truth = np.linspace(40.0, 60.0, 14)  # sd about 6.4, against noise sd 2: a seed pair at ~0.6
    expected = np.mean(
        [
            correlations(truth.tolist(), np.mean(list(_runs(truth, 2.0, 3, rng).values()), 0))[
                "kendall_tau"
            ]
            for _ in range(300)
        ]
    )
    estimates = [
        noise_ceiling(correlations, _runs(truth, 2.0, 3, rng), draws=200)["kendall_tau"]
        for _ in range(20)
    ]
    assert abs(np.mean(estimates) - expected) < 0.05
    # and it is above one run against the mean of the others, the bound it replaces
    rest = proxy_ranking(correlations, {}, [], list(truth), list(truth), _runs(truth, 2.0, 3, rng))
    assert rest["noise_ceiling"]["kendall_tau"] > rest["standalone_one_vs_rest"]["kendall_tau"]


def test_more_noise_or_fewer_seeds_lower_the_ceiling() -> None:
    rng = np.random.default_rng(2)
    truth = np.linspace(0.0, 10.0, 12)
    quiet = noise_ceiling(correlations, _runs(truth, 0.5, 3, rng))["kendall_tau"]
    loud = noise_ceiling(correlations, _runs(truth, 3.0, 3, rng))["kendall_tau"]
    assert loud < quiet
    runs = _runs(truth, 2.0, 6, rng)
    two = noise_ceiling(correlations, {s: runs[s] for s in (0, 1)})["kendall_tau"]
    six = noise_ceiling(correlations, runs)["kendall_tau"]
    assert two < six


def test_one_seed_or_flat_rows_give_no_ceiling() -> None:
    assert noise_ceiling(correlations, {0: [1.0, 2.0, 3.0]}) == {}
    assert noise_ceiling(correlations, {0: [2.0, 2.0, 2.0], 1: [2.0, 2.0, 2.0]}) == {}

"""The ranking bench's noise floor: every pair of stand-alone seeds and their mean."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from bench_ranking import correlations, proxy_ranking


def test_every_seed_pair_is_scored_and_averaged(capsys: pytest.CaptureFixture[str]) -> None:
    per_seed = {
        0: [1.0, 2.0, 3.0, 4.0],
        1: [1.0, 2.0, 4.0, 3.0],  # one pair swapped against seed 0
        2: [4.0, 3.0, 2.0, 1.0],  # reversed
    }
    standalone = [sum(v[i] for v in per_seed.values()) / 3 for i in range(4)]
    result = proxy_ranking(
        correlations,
        {"sn": [1.0, 2.0, 3.0, 4.0]},
        ["inh0"],
        [1.0, 2.0, 3.0, 4.0],
        standalone,
        per_seed,
    )
    pairs = result["standalone_seed_vs_seed"]
    assert sorted(pairs) == ["0-1", "0-2", "1-2"]  # seed 0 vs 2 too, not only neighbours
    assert pairs["0-2"]["kendall_tau"] == -1.0
    taus = [p["kendall_tau"] for p in pairs.values()]
    assert result["standalone_seed_vs_seed_mean"]["kendall_tau"] == sum(taus) / 3
    assert "mean of 3 pairs" in capsys.readouterr().out


def test_two_seeds_give_one_pair_and_no_mean() -> None:
    per_seed = {0: [1.0, 2.0, 3.0], 1: [1.0, 3.0, 2.0]}
    result = proxy_ranking(correlations, {}, [], [1.0, 2.0, 3.0], [1.0, 2.5, 2.5], per_seed)
    assert list(result["standalone_seed_vs_seed"]) == ["0-1"]
    assert "standalone_seed_vs_seed_mean" not in result

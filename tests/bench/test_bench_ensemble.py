"""The ranking bench's ensemble proxy (the mean of several supernets' inherited scores), its
members' agreement, and each stand-alone seed against the mean of the others."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from bench_ranking import correlations, ensemble_members, one_vs_rest, proxy_ranking, row_mean


def test_ensemble_is_the_per_row_mean_of_its_members() -> None:
    inherited = {"a": [1.0, 4.0, 2.0], "b": [3.0, 0.0, 2.0], "c": [9.0, 9.0, 9.0]}
    members = ensemble_members(list(inherited), ["a,b", "a,b,c"])
    assert members == {"mean(a, b)": ["a", "b"], "mean(a, b, c)": ["a", "b", "c"]}
    means = {name: row_mean([inherited[m] for m in parts]) for name, parts in members.items()}
    assert means == {"mean(a, b)": [2.0, 2.0, 2.0], "mean(a, b, c)": [13 / 3, 13 / 3, 13 / 3]}
    assert ensemble_members(list(inherited), ["a,a,b"]) == {"mean(a, b)": ["a", "b"]}


def test_ensemble_matches_paths_however_written() -> None:
    members = ensemble_members(["work_dirs/a", "work_dirs/b"], ["work_dirs/a/,./work_dirs/b"])
    assert members == {"mean(work_dirs/a, work_dirs/b)": ["work_dirs/a", "work_dirs/b"]}


@pytest.mark.parametrize(
    ("group", "says"),
    [("a,z", "z is not one of the --checkpoint paths (a, b)"), ("a,a", "at least two distinct")],
)
def test_bad_ensemble_names_the_flag(group: str, says: str) -> None:
    with pytest.raises(SystemExit, match=r"--ensemble") as err:
        ensemble_members(["a", "b"], [group])
    assert says in str(err.value)


def test_one_seed_vs_the_rest_averages_over_seeds() -> None:
    calls: list[tuple[list[float], list[float]]] = []

    def score(x: list[float], y: list[float]) -> dict[str, float]:
        calls.append((x, y))
        return {"rest_first": y[0]}

    per_seed = {0: [0.0, 1.0], 1: [3.0, 1.0], 2: [6.0, 1.0]}
    # Each seed against the mean of the two others: 4.5, 3.0 and 1.5; averaged 3.0.
    assert one_vs_rest(score, per_seed) == {"rest_first": 3.0}
    assert [x for x, _ in calls] == [per_seed[0], per_seed[1], per_seed[2]]
    assert one_vs_rest(correlations, {0: [1.0, 2.0], 1: [2.0, 1.0]}) == {}  # 2 seeds: no rest


def test_proxy_ranking_reports_members_against_each_other(
    capsys: pytest.CaptureFixture[str],
) -> None:
    per_seed = {0: [1.0, 2.0, 3.0, 4.0], 1: [1.0, 2.0, 4.0, 3.0]}
    inherited = {"a": [1.0, 2.0, 3.0, 4.0], "b": [4.0, 3.0, 2.0, 1.0]}
    members = ensemble_members(list(inherited), ["a,b"])
    result = proxy_ranking(
        correlations,
        {**inherited, "mean(a, b)": row_mean(list(inherited.values()))},
        ["inh0", "inh1", "ens0"],
        [1.0, 2.0, 3.0, 4.0],
        [1.0, 2.0, 3.5, 3.5],
        per_seed,
        members,
    )
    assert result["supernet_vs_supernet"]["a vs b"]["kendall_tau"] == -1.0
    assert "mean(a, b)" in result["inherited"]
    assert "supernet a vs b" in capsys.readouterr().out

"""The ranking bench's equal-cost groups and the tau over their within-group pairs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from benchkit import cost_groups, grouped_tau


def test_groups_gather_the_items_nearest_each_inner_quantile() -> None:
    # Three clusters of cost around 10, 50 and 90, plus both ends far away.
    values = [0.0, 10.0, 11.0, 9.5, 50.0, 49.0, 52.0, 90.0, 91.0, 88.0, 200.0]
    groups = cost_groups(values, levels=3, size=3)
    assert [sorted(values[i] for i in g) for g in groups] == [
        [9.5, 10.0, 11.0],
        [49.0, 50.0, 52.0],
        [88.0, 90.0, 91.0],
    ]
    assert len({i for g in groups for i in g}) == 9  # no item in two groups


def test_groups_refuse_more_items_than_given() -> None:
    with pytest.raises(ValueError, match="2 x 3 items asked of 5"):
        cost_groups([1.0, 2.0, 3.0, 4.0, 5.0], levels=2, size=3)


def test_grouped_tau_counts_only_the_pairs_within_a_group() -> None:
    proxy = [1.0, 2.0, 3.0, 4.0]
    truth = [10.0, 20.0, 2.0, 1.0]  # group 0 in order, group 1 reversed, across groups anything
    assert grouped_tau(proxy, truth, [[0, 1], [2, 3]]) == 0.0
    assert grouped_tau(proxy, truth, [[0, 1]]) == 1.0
    assert grouped_tau(proxy, truth, [[2, 3]]) == -1.0


def test_grouped_tau_counts_ties_as_neither() -> None:
    assert grouped_tau([1.0, 1.0, 2.0], [1.0, 2.0, 3.0], [[0, 1, 2]]) == pytest.approx(2 / 3)


def test_grouped_tau_refuses_groups_without_pairs() -> None:
    with pytest.raises(ValueError, match="no group has two items"):
        grouped_tau([1.0], [1.0], [[0]])

"""The ranking bench's choice of subnets: distinct items spread over the range of values."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from benchkit import spread_indices


def test_spread_takes_both_ends_and_even_quantiles() -> None:
    values = [float(v) for v in (50, 10, 40, 0, 30, 20, 60, 70, 80)]  # 0..80 shuffled
    picked = spread_indices(values, 5)
    assert [values[i] for i in picked] == [0, 20, 40, 60, 80]


def test_spread_never_takes_an_item_twice_and_stays_in_order() -> None:
    values = [1.0, 1.0, 1.0, 2.0, 100.0]
    picked = spread_indices(values, 5)
    assert sorted(picked) == [0, 1, 2, 3, 4]
    assert [values[i] for i in picked] == sorted(values[i] for i in picked)


def test_spread_refuses_more_items_than_given() -> None:
    with pytest.raises(ValueError, match="3 items asked of 2"):
        spread_indices([1.0, 2.0], 3)

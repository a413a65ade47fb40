"""The non-dominated set and the hypervolume, against brute force."""

from __future__ import annotations

import itertools
import random

import pytest

from gen5nas.search.pareto import dominates, front, hypervolume, non_dominated


def brute_non_dominated(points: list[tuple[float, float]]) -> list[bool]:
    return [not any(dominates(q, p) for q in points) for p in points]


def brute_hypervolume(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    # Exact area of the union of the dominated boxes, by elementary cells on the grid of all
    # coordinates.
    xs = sorted({c for _, c in points if c < ref[1]} | {ref[1]})
    ys = sorted({a for a, _ in points if a > ref[0]} | {ref[0]})
    area = 0.0
    for (x0, x1), (y0, y1) in itertools.product(itertools.pairwise(xs), itertools.pairwise(ys)):
        if any(c <= x0 and a >= y1 for a, c in points):
            area += (x1 - x0) * (y1 - y0)
    return area


@pytest.mark.parametrize("seed", range(20))
def test_non_dominated_matches_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 40)
    # Few distinct values: ties in one or both objectives are frequent.
    points = [(float(rng.randint(0, 8)), float(rng.randint(0, 8))) for _ in range(n)]
    assert non_dominated(points) == brute_non_dominated(points)


@pytest.mark.parametrize("seed", range(20))
def test_hypervolume_matches_brute_force(seed: int) -> None:
    rng = random.Random(100 + seed)
    points = [(rng.uniform(0, 10), rng.uniform(0, 10)) for _ in range(rng.randint(1, 25))]
    ref = (rng.uniform(-1, 3), rng.uniform(8, 12))
    assert hypervolume(points, ref) == pytest.approx(brute_hypervolume(points, ref))


def test_hypervolume_small_cases() -> None:
    assert hypervolume([], (0.0, 1.0)) == 0.0
    assert hypervolume([(1.0, 0.0)], (0.0, 1.0)) == pytest.approx(1.0)
    # A point outside the reference box adds nothing.
    assert hypervolume([(2.0, 5.0)], (0.0, 1.0)) == 0.0
    # A dominated point adds nothing.
    pts = [(2.0, 1.0), (1.0, 0.5)]
    assert hypervolume([*pts, (1.0, 1.0)], (0.0, 2.0)) == pytest.approx(
        hypervolume(pts, (0.0, 2.0))
    )


def test_front_is_sorted_by_cost_and_increasing_in_accuracy() -> None:
    rng = random.Random(7)
    points = [(rng.random(), rng.random()) for _ in range(200)]
    f = front(points)
    assert [c for _, c in f] == sorted(c for _, c in f)
    assert [a for a, _ in f] == sorted(a for a, _ in f)

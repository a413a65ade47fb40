"""The accuracy / hardware-cost trade-off: the non-dominated set and its hypervolume.

Points are ``(accuracy, cost)``: accuracy is maximised, cost minimised. Plain Python on
purpose: the CSV test recomputes the front from the CSV's numbers with these functions, and
the operator (no numpy) summarises fronts with them too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

Point = tuple[float, float]
T = TypeVar("T")


def dominates(a: Point, b: Point) -> bool:
    """``a`` is at least as good as ``b`` in both objectives and better in one."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def non_dominated(points: Sequence[Point]) -> list[bool]:
    """For each point, whether no other point dominates it (duplicates are all kept)."""
    # Sort by cost ascending, accuracy descending; a point is on the front iff its accuracy
    # beats every cheaper point's (ties in cost: only the most accurate ones).
    order = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0]))
    flags = [False] * len(points)
    best_acc = float("-inf")
    best_at_cost: Point | None = None
    for i in order:
        acc, cost = points[i]
        if acc > best_acc:
            flags[i] = True
            best_acc = acc
            best_at_cost = (acc, cost)
        elif best_at_cost is not None and (acc, cost) == best_at_cost:
            flags[i] = True  # an exact duplicate of a front point
    return flags


def front(points: Sequence[Point]) -> list[Point]:
    """The non-dominated points, sorted by cost."""
    flags = non_dominated(points)
    return sorted({p for p, f in zip(points, flags, strict=True) if f}, key=lambda p: p[1])


def hypervolume(points: Sequence[Point], reference: Point) -> float:
    """The area dominated by ``points`` and bounded by ``reference`` = (worst accuracy,
    worst cost); points not better than the reference in both objectives add nothing."""
    ref_acc, ref_cost = reference
    inside = [(a, c) for a, c in points if a > ref_acc and c < ref_cost]
    area = 0.0
    prev_cost = ref_cost
    # Walk the front from the most expensive (most accurate) point to the cheapest.
    for acc, cost in sorted(front(inside), key=lambda p: -p[1]):
        area += (acc - ref_acc) * (prev_cost - cost)
        prev_cost = cost
    return area


def spread(items: Sequence[T], n: int) -> list[T]:
    """At most ``n`` items evenly spaced along ``items``, both ends included: a capped front
    still shows the whole trade-off, from the cheapest to the most accurate subnet."""
    if len(items) <= n:
        return list(items)
    if n == 1:
        return [items[-1]]
    idx = sorted({round(i * (len(items) - 1) / (n - 1)) for i in range(n)})
    return [items[i] for i in idx]

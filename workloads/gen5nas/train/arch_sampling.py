"""How the sandwich rule picks its random subnets each step (``schedule.archSampling``).

- ``uniform`` (BigNAS): every dimension independently uniform over its values. With many
  dimensions the subnets concentrate around the middle of the space, and each is a fresh
  mix of small and large stages.
- ``stratified``: the ``n`` random subnets of a step spread over the size range: subnet ``i``
  draws a level ``t`` in the ``i``-th of ``n`` equal slices of [0, 1], and every dimension
  takes the value at quantile ``t`` of its range, jittered by ``jitter`` (so neighbouring
  sizes and mixed stages still occur). Over a few steps the levels cover the space from the
  min to the max subnet, as the search later does.
- ``wide``: uniform, except that every width (the first, each stage's, the last) is drawn with
  probability rising linearly with its rank (the widest ``n`` times as often as the narrowest of
  ``n``). The channels beyond a stage's narrowest width train only in subnets at least that
  wide; under uniform draws the widest ones get a ``1/n`` share of the random passes, and a
  supernet then under-rates wide subnets against training them alone.

A sampler is a pure function of its ``random.Random``: the same on every rank and after a
resume (the sandwich step seeds it from (seed, epoch, iteration)).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TypeVar

from gen5nas.spec.space import Arch, SearchSpace, range_values

ArchSampler = Callable[[SearchSpace, random.Random, int], list[Arch]]

T = TypeVar("T")


def uniform(space: SearchSpace, rng: random.Random, n: int) -> list[Arch]:
    return [space.sample(rng) for _ in range(n)]


def _wide(values: list[int], rng: random.Random) -> int:
    return rng.choices(values, weights=range(1, len(values) + 1))[0]


def wide(space: SearchSpace, rng: random.Random, n: int) -> list[Arch]:
    return [space.sample(rng, pick_width=_wide) for _ in range(n)]


def _at_level(values: Sequence[T], level: float, rng: random.Random, jitter: float) -> T:
    """The value at quantile ``level`` (jittered) of ``values``, sorted small to large."""
    q = min(1.0, max(0.0, level + rng.gauss(0.0, jitter)))
    return values[min(len(values) - 1, int(q * len(values)))]


def stratified_arch(
    space: SearchSpace, level: float, rng: random.Random, jitter: float = 0.25
) -> Arch:
    """An arch around ``level`` (0: the min subnet, 1: the max subnet) of ``space``."""
    s = space.arch_setting
    resolutions = sorted(space.input_resizer_cfg, key=lambda hw: (hw[0] * hw[1], hw))
    stages = []
    for i in range(s.num_stages):
        depth = _at_level(range_values(s.num_blocks[i]), level, rng, jitter)
        stages.append(
            space._stage(
                i,
                depth,
                _at_level(range_values(s.kernel_size[i]), level, rng, jitter),
                _at_level(range_values(s.num_out_channels[i]), level, rng, jitter),
            )
        )
    return Arch(
        resolution=_at_level(resolutions, level, rng, jitter),
        first_num_out_channels=_at_level(
            range_values(s.first_num_out_channels), level, rng, jitter
        ),
        last_num_out_channels=_at_level(range_values(s.last_num_out_channels), level, rng, jitter),
        stages=stages,
    )


def stratified(space: SearchSpace, rng: random.Random, n: int) -> list[Arch]:
    return [stratified_arch(space, (i + rng.random()) / n, rng) for i in range(n)]


SAMPLERS: dict[str, ArchSampler] = {"uniform": uniform, "stratified": stratified, "wide": wide}


def arch_sampler(name: str) -> ArchSampler:
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown arch sampling {name!r}; allowed: {sorted(SAMPLERS)}") from None


__all__ = [
    "SAMPLERS",
    "ArchSampler",
    "arch_sampler",
    "stratified",
    "stratified_arch",
    "uniform",
    "wide",
]

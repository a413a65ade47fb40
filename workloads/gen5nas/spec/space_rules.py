"""The validators of a search space's fields, each with its CEL copy for the CRDs: ``[min, max,
step]`` ranges (bounded before they are expanded), kernel ranges, CompOFA ratio tables and
resolution lists."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from gen5nas.spec.bounds import (
    MAX_CHANNELS,
    MAX_DEPTH,
    MAX_EXPAND_RATIO,
    MAX_KERNEL,
    MAX_LIST,
    MAX_RESOLUTION,
    MAX_SPACE_VALUES,
    MAX_STAGES,
    Cel,
)


def _check_range(value: tuple[int, int, int], max_value: int) -> tuple[int, int, int]:
    lo, hi, step = value
    if lo <= 0:
        raise ValueError(f"min must be positive, got {lo} (format [min, max, step])")
    if hi > max_value or step > max_value:
        raise ValueError(
            f"{list(value)}: max and step may be at most {max_value} (format [min, max, step])"
        )
    if lo > hi:
        raise ValueError(f"min {lo} is greater than max {hi} (format [min, max, step])")
    if step <= 0:
        raise ValueError(f"step must be positive, got {step} (format [min, max, step])")
    # Counted, never expanded: a huge range is refused before it costs memory.
    count = (hi - lo) // step + 1
    if count > MAX_SPACE_VALUES:
        raise ValueError(
            f"[{lo}, {hi}, {step}] expands to {count} values; allowed: at most "
            f"{MAX_SPACE_VALUES} per range (raise step or narrow [min, max])"
        )
    if (hi - lo) % step:
        first = [lo + i * step for i in range(min(count, 6))]
        raise ValueError(
            f"step {step} does not land on max: from {lo} by {step} the values are "
            f"{first}..., never {hi} (format [min, max, step])"
        )
    return value


_RANGE_RULES = (
    Cel("self[0] <= self[1]", "min must not be greater than max (format [min, max, step])"),
    Cel(
        "self[2] < 1 || (self[1] - self[0]) % self[2] == 0",
        "step must land on max: (max - min) must be a multiple of step ([min, max, step])",
    ),
    Cel(
        f"self[2] < 1 || (self[1] - self[0]) / self[2] < {MAX_SPACE_VALUES}",
        f"a [min, max, step] range may expand to at most {MAX_SPACE_VALUES} values",
    ),
)


@dataclass(frozen=True)
class RangeBounds:
    """``[min, max, step]`` with min and max in 1..max_value, step >= 1 landing exactly on max
    and at most MAX_SPACE_VALUES values: checked by :func:`_check_range` (its messages name min,
    max or step), and carried into the JSON schema (element bounds and CEL rules) for the CRD."""

    max_value: int

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        check = functools.partial(_check_range, max_value=self.max_value)
        return core_schema.no_info_after_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out = handler(schema)
        for item in out.get("prefixItems", []):
            item.update(minimum=1, maximum=self.max_value)
        out.setdefault("x-kubernetes-validations", []).extend(r.as_dict() for r in _RANGE_RULES)
        return out


IntRange = Annotated[tuple[int, int, int], RangeBounds(MAX_CHANNELS)]
"""``[min, max, step]``, all positive, and ``step`` lands exactly on ``max``."""
DepthRange = Annotated[tuple[int, int, int], RangeBounds(MAX_DEPTH)]
ChannelRange = IntRange


def range_values(r: tuple[int, int, int]) -> list[int]:
    lo, hi, step = r
    return list(range(lo, hi + 1, step))


def _check_kernel_range(value: tuple[int, int, int]) -> tuple[int, int, int]:
    for k in range_values(value):
        if k % 2 == 0:
            raise ValueError(
                f"kernel sizes must be odd (a centred 'same' padding needs it), but "
                f"{list(value)} includes {k}; use an even step from an odd min, e.g. [3, 7, 2]"
            )
    return value


KernelRange = Annotated[
    tuple[int, int, int],
    RangeBounds(MAX_KERNEL),
    AfterValidator(_check_kernel_range),
    Cel(
        "self[0] % 2 == 1 && (self[0] == self[1] || self[2] % 2 == 0)",
        "kernel sizes must be odd: an odd min and an even step, e.g. [3, 7, 2]",
    ),
]


def _check_ratio_table(table: dict[int, float]) -> dict[int, float]:
    if not table:
        raise ValueError("empty table; give a ratio for every num_blocks value, e.g. {1: 4, 2: 6}")
    for depth, ratio in table.items():
        # The supernet has no contracting 1x1 conv: below 1 it would silently run ratio 1.
        if not ratio >= 1:
            raise ValueError(
                f"ratio for num_blocks={depth} is {ratio}; allowed: a number >= 1 "
                f"(1 = no expand conv), e.g. {{1: 1, 2: 6}}"
            )
    return dict(sorted(table.items()))


ExpandTable = Annotated[
    dict[Annotated[int, Field(ge=1, le=MAX_DEPTH)], Annotated[float, Field(le=MAX_EXPAND_RATIO)]],
    Field(max_length=MAX_DEPTH),
    AfterValidator(_check_ratio_table),
    Cel("size(self) >= 1", "empty table; give a ratio for every num_blocks value"),
    Cel("self.all(k, k.matches('^[0-9]+$'))", "keys are num_blocks values (integers)"),
    Cel("self.all(k, self[k] >= 1.0)", "a ratio is a number >= 1 (1 = no expand conv)"),
]


def _resolution_list(value: Any) -> Any:
    # The seed nests the list as input_resizer_cfg.input_sizes; accept both spellings.
    if isinstance(value, dict) and set(value) <= {"input_sizes", "inputSizes"}:
        return value.get("input_sizes", value.get("inputSizes"))
    return value


def _check_resolutions(value: list[tuple[int, int]]) -> list[tuple[int, int]]:
    if not value:
        raise ValueError("empty list; give at least one [height, width], e.g. [[224, 224]]")
    if len(set(value)) != len(value):
        raise ValueError(f"duplicate resolutions in {[list(v) for v in value]}")
    return value


_Side = Annotated[int, Field(ge=1, le=MAX_RESOLUTION)]
Resolution = tuple[_Side, _Side]
"""``[height, width]`` in pixels."""

Resolutions = Annotated[
    list[Resolution],
    BeforeValidator(_resolution_list),
    Field(max_length=MAX_LIST),
    AfterValidator(_check_resolutions),
    Cel("size(self) >= 1", "give at least one [height, width], e.g. [[224, 224]]"),
    Cel("self.all(a, self.exists_one(b, b == a))", "duplicate resolutions"),
]


def same_stages(name: str) -> Cel:
    return Cel(
        f"size(self.{name}) == size(self.numBlocks)",
        f"{name} needs one entry per stage: as many as numBlocks",
    )


STAGE_INDEXES = f"[{', '.join(str(i) for i in range(MAX_STAGES))}]"
DEPTH_VALUES = f"[{', '.join(str(d) for d in range(1, MAX_DEPTH + 1))}]"

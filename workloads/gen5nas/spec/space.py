"""The search space in the seed's vocabulary, and one subnet of it (an "arch").

A space is column-oriented, as the seed's ``arch_setting``: every per-stage key is a list with one
entry per stage. ``num_blocks``, ``kernel_size`` and ``num_out_channels`` are ``[min, max, step]``;
``expand_ratio`` is CompOFA's coupling table ``{num_blocks: ratio}`` (the ratio is read from the
table, never searched); ``stride`` is fixed per stage. Torch-free: the operator imports it too.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ModelWrapValidatorHandler,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, InitErrorDetails, PydanticCustomError, core_schema

from gen5nas.atomic import atomic_write_text
from gen5nas.errors import ArchError, SpecError
from gen5nas.spec.bounds import (
    DNS1123_SUBDOMAIN,
    MAX_CHANNELS,
    MAX_DEPTH,
    MAX_EXPAND_RATIO,
    MAX_KERNEL,
    MAX_LIST,
    MAX_RESOLUTION,
    MAX_SPACE_VALUES,
    MAX_STAGES,
    MAX_STRING,
    Cel,
    cel_rules,
)
from gen5nas.spec.yaml_input import read_yaml as read_yaml  # re-exported: the one reader
from gen5nas.spec.yaml_input import read_yaml_documents as read_yaml_documents


class SpecModel(BaseModel):
    """Base of every spec model: camelCase aliases for Kubernetes, snake_case (the seed's names)
    accepted as well, and unknown fields refused so that a typo never passes silently."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,  # .inf / .nan in a float field is refused, never trained with
        str_max_length=MAX_STRING,
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


def _errors_at(title: str, errors: list[tuple[tuple[str | int, ...], str, Any]]) -> ValidationError:
    """A ValidationError with each ``(loc, message, value)`` at its own ``loc`` (relative to the
    model being validated).

    Raised from a model validator, pydantic prefixes the outer path, so :func:`parse_model`'s
    ``SpecError.field`` names the exact entry (``arch_setting.expand_ratio[3]``) rather than the
    whole model, as a plain ValueError would.
    """
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError("value_error", "{reason}", {"reason": reason}),
                loc=where,
                input=value,
            )
            for where, reason, value in errors
        ],
    )


def _same_stages(name: str) -> Cel:
    return Cel(
        f"size(self.{name}) == size(self.numBlocks)",
        f"{name} needs one entry per stage: as many as numBlocks",
    )


_STAGE = f"[{', '.join(str(i) for i in range(MAX_STAGES))}]"
_DEPTHS = f"[{', '.join(str(d) for d in range(1, MAX_DEPTH + 1))}]"


class ArchSetting(SpecModel):
    """The seed's ``arch_setting``: one list entry per stage for the per-stage keys."""

    # The API server's copy of _check_consistency. CEL has no range(): the stage indices and
    # depths are literal lists (both are bounded, so the cost estimate is too).
    model_config = cel_rules(
        *(_same_stages(n) for n in ("kernelSize", "numOutChannels", "expandRatio", "stride")),
        Cel(
            f"{_STAGE}.all(i, i >= size(self.numBlocks) || i >= size(self.expandRatio) || "
            f"self.numBlocks[i][2] < 1 || {_DEPTHS}.all(d, d < self.numBlocks[i][0] || "
            f"d > self.numBlocks[i][1] || (d - self.numBlocks[i][0]) % self.numBlocks[i][2] "
            f"!= 0 || string(d) in self.expandRatio[i]))",
            "expandRatio needs a ratio for every numBlocks value of its stage",
        ),
    )

    num_blocks: list[DepthRange] = Field(
        min_length=1, max_length=MAX_STAGES, description="per stage [min, max, step]"
    )
    kernel_size: list[KernelRange] = Field(
        min_length=1, max_length=MAX_STAGES, description="per stage [min, max, step]"
    )
    num_out_channels: list[ChannelRange] = Field(
        min_length=1, max_length=MAX_STAGES, description="per stage [min, max, step]"
    )
    expand_ratio: list[ExpandTable] = Field(
        min_length=1,
        max_length=MAX_STAGES,
        description="per stage {num_blocks: ratio} (CompOFA: the ratio follows the depth)",
    )
    stride: list[Annotated[int, Field(ge=1, le=2)]] = Field(
        min_length=1, max_length=MAX_STAGES, description="per stage, fixed: 1 or 2"
    )
    first_num_out_channels: ChannelRange = Field(description="[min, max, step] of the stem conv")
    last_num_out_channels: ChannelRange = Field(description="[min, max, step] of the last 1x1 conv")

    @model_validator(mode="before")
    @classmethod
    def _broadcast_expand_table(cls, data: Any) -> Any:
        # One {num_blocks: ratio} table may be given for all stages (the seed's own example).
        if isinstance(data, dict):
            for key in ("expand_ratio", "expandRatio"):
                table = data.get(key)
                if isinstance(table, dict):
                    stages = len(data.get("num_blocks", data.get("numBlocks", [])) or [])
                    data = {**data, key: [table] * max(stages, 1)}
        return data

    @model_validator(mode="wrap")
    @classmethod
    def _check_consistency(
        cls, data: Any, handler: ModelWrapValidatorHandler[ArchSetting]
    ) -> ArchSetting:
        setting = handler(data)
        given = data if isinstance(data, dict) else {}

        def loc(name: str, *index: int) -> tuple[str | int, ...]:
            # Name the key as the user spelled it, as pydantic does for field errors.
            return (to_camel(name) if to_camel(name) in given else name, *index)

        errors: list[tuple[tuple[str | int, ...], str, Any]] = []
        n = len(setting.num_blocks)
        for name in ("kernel_size", "num_out_channels", "expand_ratio", "stride"):
            got = len(getattr(setting, name))
            if got != n:
                errors.append(
                    (
                        loc(name),
                        f"has {got} entries but num_blocks has {n}: every per-stage key needs "
                        f"one entry per stage",
                        getattr(setting, name),
                    )
                )
        if not errors:
            for i, (depths, table) in enumerate(
                zip(setting.num_blocks, setting.expand_ratio, strict=True)
            ):
                missing = [d for d in range_values(depths) if d not in table]
                if missing:
                    errors.append(
                        (
                            loc("expand_ratio", i),
                            f"has no ratio for num_blocks {missing} (stage {i} allows num_blocks "
                            f"{range_values(depths)}; the table has {sorted(table)}); give a "
                            f"ratio >= 1 for each",
                            table,
                        )
                    )
        if errors:
            raise _errors_at(cls.__name__, errors)
        return setting

    @property
    def num_stages(self) -> int:
        return len(self.num_blocks)


class StageArch(SpecModel):
    """One stage of a concrete subnet."""

    num_blocks: int = Field(ge=1, le=MAX_DEPTH)
    kernel_size: int = Field(ge=1, le=MAX_KERNEL)
    expand_ratio: float = Field(gt=0, le=MAX_EXPAND_RATIO)
    num_out_channels: int = Field(ge=1, le=MAX_CHANNELS)


class Arch(SpecModel):
    """One subnet: a concrete value for every dimension of a :class:`SearchSpace`.

    Its YAML form (``fix_subnets/trial_N.yaml``) is documented in README "Architecture files".
    """

    resolution: Resolution
    first_num_out_channels: int = Field(ge=1, le=MAX_CHANNELS)
    last_num_out_channels: int = Field(ge=1, le=MAX_CHANNELS)
    stages: list[StageArch] = Field(min_length=1, max_length=MAX_STAGES)

    def to_yaml_dict(self) -> dict[str, Any]:
        """The seed-vocabulary (snake_case) dict written to ``fix_subnets/trial_N.yaml``."""
        data = self.model_dump(mode="json", by_alias=False)
        data["resolution"] = list(self.resolution)
        for stage in data["stages"]:
            ratio = stage["expand_ratio"]
            if float(ratio).is_integer():
                stage["expand_ratio"] = int(ratio)
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_yaml_dict(), sort_keys=False, default_flow_style=None)

    def summary(self) -> str:
        """A short one-line summary, e.g. for Kubernetes status: ``224x224 s32 d1-2-3 ... l1280``."""
        h, w = self.resolution
        depths = "".join(str(s.num_blocks) for s in self.stages)
        kernels = "".join(str(s.kernel_size) for s in self.stages)
        widths = "-".join(str(s.num_out_channels) for s in self.stages)
        return (
            f"{h}x{w} f{self.first_num_out_channels} d{depths} k{kernels} w{widths} "
            f"l{self.last_num_out_channels}"
        )

    def key(self) -> str:
        """A stable identity for caches and de-duplication."""
        return self.model_dump_json(by_alias=False)


def load_arch(path: str | Path) -> Arch:
    """Read an arch YAML (``fix_subnets/trial_N.yaml``); errors name the file and the field."""
    data = read_yaml(path, "arch file")
    if data is None:
        raise SpecError(f"{path}: empty file; expected an arch (resolution, stages, ...)")
    if isinstance(data, dict) and "arch" in data and "stages" not in data:
        data = data["arch"]  # an arch embedded in a larger document (e.g. a trial record)
    return parse_model(Arch, data, source=str(path))


def save_arch(arch: Arch, path: str | Path) -> Path:
    return atomic_write_text(path, arch.to_yaml())


class SearchSpace(SpecModel):
    """``arch_setting`` + ``input_resizer_cfg``: everything that defines the candidate subnets."""

    arch_setting: ArchSetting
    input_resizer_cfg: Resolutions = Field(description="list of [height, width] input resolutions")

    # ---- the two extremes and random members ---------------------------------------------
    def _stage(self, i: int, depth: int, kernel: int, width: int) -> StageArch:
        ratio = self.arch_setting.expand_ratio[i][depth]
        return StageArch(
            num_blocks=depth, kernel_size=kernel, expand_ratio=ratio, num_out_channels=width
        )

    def _resolutions_by_area(self) -> list[tuple[int, int]]:
        return sorted(self.input_resizer_cfg, key=lambda hw: (hw[0] * hw[1], hw))

    def max(self) -> Arch:
        """The largest subnet: every dimension at its maximum."""
        s = self.arch_setting
        return Arch(
            resolution=self._resolutions_by_area()[-1],
            first_num_out_channels=s.first_num_out_channels[1],
            last_num_out_channels=s.last_num_out_channels[1],
            stages=[
                self._stage(i, s.num_blocks[i][1], s.kernel_size[i][1], s.num_out_channels[i][1])
                for i in range(s.num_stages)
            ],
        )

    def min(self) -> Arch:
        """The smallest subnet: every dimension at its minimum."""
        s = self.arch_setting
        return Arch(
            resolution=self._resolutions_by_area()[0],
            first_num_out_channels=s.first_num_out_channels[0],
            last_num_out_channels=s.last_num_out_channels[0],
            stages=[
                self._stage(i, s.num_blocks[i][0], s.kernel_size[i][0], s.num_out_channels[i][0])
                for i in range(s.num_stages)
            ],
        )

    def sample(self, rng: random.Random) -> Arch:
        """A uniformly random subnet (each dimension independently; the expand ratio follows
        the sampled depth through the CompOFA table)."""
        s = self.arch_setting
        return Arch(
            resolution=rng.choice(self.input_resizer_cfg),
            first_num_out_channels=rng.choice(range_values(s.first_num_out_channels)),
            last_num_out_channels=rng.choice(range_values(s.last_num_out_channels)),
            stages=[
                self._stage(
                    i,
                    rng.choice(range_values(s.num_blocks[i])),
                    rng.choice(range_values(s.kernel_size[i])),
                    rng.choice(range_values(s.num_out_channels[i])),
                )
                for i in range(s.num_stages)
            ],
        )

    # ---- membership ----------------------------------------------------------------------
    def violations(self, arch: Arch) -> Iterator[tuple[str, str]]:
        """Every (dimension, reason) for which ``arch`` is outside this space."""
        s = self.arch_setting
        if tuple(arch.resolution) not in {tuple(r) for r in self.input_resizer_cfg}:
            yield (
                "resolution",
                f"{list(arch.resolution)} is not one of input_resizer_cfg "
                f"{[list(r) for r in self.input_resizer_cfg]}",
            )
        for name in ("first_num_out_channels", "last_num_out_channels"):
            allowed = range_values(getattr(s, name))
            if getattr(arch, name) not in allowed:
                yield name, f"{getattr(arch, name)} is not in {_fmt_values(allowed)}"
        if len(arch.stages) != s.num_stages:
            yield "stages", f"the arch has {len(arch.stages)} stages, the space {s.num_stages}"
            return
        for i, stage in enumerate(arch.stages):
            for name in ("num_blocks", "kernel_size", "num_out_channels"):
                allowed = range_values(getattr(s, name)[i])
                value = getattr(stage, name)
                if value not in allowed:
                    yield f"stages[{i}].{name}", f"{value} is not in {_fmt_values(allowed)}"
            table = s.expand_ratio[i]
            expected = table.get(stage.num_blocks)
            if expected is not None and not math.isclose(stage.expand_ratio, expected):
                yield (
                    f"stages[{i}].expand_ratio",
                    f"{stage.expand_ratio} does not match the CompOFA table: num_blocks="
                    f"{stage.num_blocks} requires expand_ratio {expected} (table {table})",
                )

    def contains(self, arch: Arch) -> bool:
        return next(self.violations(arch), None) is None

    def why_not(self, arch: Arch) -> str | None:
        """The first reason ``arch`` is outside this space, or None when it is inside."""
        first = next(self.violations(arch), None)
        return None if first is None else f"{first[0]}: {first[1]}"

    def check(self, arch: Arch) -> Arch:
        """Return ``arch`` or raise :class:`ArchError` naming the first offending dimension."""
        first = next(self.violations(arch), None)
        if first is not None:
            raise ArchError(first[1] + " (the arch is outside the search space)", first[0])
        return arch

    # ---- size ------------------------------------------------------------------------------
    def size(self, *, free_expand_ratio: bool = False) -> int:
        """Number of distinct subnets. With ``free_expand_ratio`` each stage may take any ratio
        of its table at any depth (no CompOFA coupling): the space CompOFA shrinks."""
        s = self.arch_setting
        total = len(self.input_resizer_cfg)
        total *= len(range_values(s.first_num_out_channels))
        total *= len(range_values(s.last_num_out_channels))
        for i in range(s.num_stages):
            per_stage = len(range_values(s.num_blocks[i]))
            per_stage *= len(range_values(s.kernel_size[i]))
            per_stage *= len(range_values(s.num_out_channels[i]))
            if free_expand_ratio:
                per_stage *= len(set(s.expand_ratio[i].values()))
            total *= per_stage
        return total

    def iter_choices(self) -> Iterable[tuple[str, list[Any]]]:
        """Every searchable dimension and its choices, in a fixed order (the expand ratio is not
        one: it is derived from the depth). Used by samplers that need a flat space."""
        s = self.arch_setting
        yield "resolution", [tuple(r) for r in self.input_resizer_cfg]
        yield "first_num_out_channels", range_values(s.first_num_out_channels)
        yield "last_num_out_channels", range_values(s.last_num_out_channels)
        for i in range(s.num_stages):
            yield f"stages[{i}].num_blocks", range_values(s.num_blocks[i])
            yield f"stages[{i}].kernel_size", range_values(s.kernel_size[i])
            yield f"stages[{i}].num_out_channels", range_values(s.num_out_channels[i])

    def arch_from_choices(self, choices: dict[str, Any]) -> Arch:
        """Inverse of :meth:`iter_choices`: build the arch (ratios from the CompOFA table)."""
        s = self.arch_setting
        stages = []
        for i in range(s.num_stages):
            stages.append(
                self._stage(
                    i,
                    int(choices[f"stages[{i}].num_blocks"]),
                    int(choices[f"stages[{i}].kernel_size"]),
                    int(choices[f"stages[{i}].num_out_channels"]),
                )
            )
        return self.check(
            Arch(
                resolution=tuple(choices["resolution"]),
                first_num_out_channels=int(choices["first_num_out_channels"]),
                last_num_out_channels=int(choices["last_num_out_channels"]),
                stages=stages,
            )
        )

    def max_resolution(self) -> tuple[int, int]:
        return self._resolutions_by_area()[-1]


def _fmt_values(values: Sequence[int]) -> str:
    if len(values) > 8:
        return f"[{values[0]}, {values[1]}, ..., {values[-1]}] (step {values[1] - values[0]})"
    return str(list(values))


def format_validation_error(exc: ValidationError, source: str | None = None) -> str:
    """One line per problem, each naming the dotted field path and what is allowed."""
    lines = []
    for err in exc.errors():
        loc = _dotted(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see the spec reference in the README)"
        elif (
            err["type"] == "string_pattern_mismatch"
            and (err.get("ctx") or {}).get("pattern") == DNS1123_SUBDOMAIN
        ):
            msg = (
                f"{str(err['input'])[:80]!r} is not a DNS-1123 name: lowercase letters, digits, "
                f"'-' and '.', starting and ending with a letter or digit (e.g. my-search)"
            )
        lines.append(f"{loc}: {msg}" if loc else msg)
    head = f"{source}: invalid spec" if source else "invalid spec"
    return head + ":\n  " + "\n  ".join(lines)


def _dotted(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_model(model: type[ModelT], data: Any, source: str | None = None) -> ModelT:
    """Validate ``data`` into ``model``; a failure becomes a :class:`SpecError` listing fields."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = SpecError(format_validation_error(exc, source))
        error.field = _dotted(exc.errors()[0]["loc"]) if exc.errors() else None
        raise error from None

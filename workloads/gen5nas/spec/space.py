"""The search space in the seed's vocabulary, and one subnet of it (an "arch").

A space is column-oriented, as the seed's ``arch_setting``: every per-stage key is a list with one
entry per stage. ``num_blocks``, ``kernel_size`` and ``num_out_channels`` are ``[min, max, step]``;
``expand_ratio`` is CompOFA's coupling table ``{num_blocks: ratio}`` (the ratio is read from the
table, never searched); ``stride`` is fixed per stage. Torch-free: the operator imports it too.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    model_validator,
)
from pydantic.alias_generators import to_camel

from gen5nas.atomic import atomic_write_text
from gen5nas.errors import ArchError, SpecError
from gen5nas.spec.bounds import (
    MAX_CHANNELS,
    MAX_DEPTH,
    MAX_EXPAND_RATIO,
    MAX_KERNEL,
    MAX_STAGES,
    Cel,
    cel_rules,
)
from gen5nas.spec.model_base import SpecModel as SpecModel  # re-exported beside the space models
from gen5nas.spec.model_base import errors_at
from gen5nas.spec.model_base import format_validation_error as format_validation_error
from gen5nas.spec.model_base import parse_model as parse_model
from gen5nas.spec.space_rules import (
    DEPTH_VALUES,
    STAGE_INDEXES,
    ChannelRange,
    DepthRange,
    ExpandTable,
    KernelRange,
    Resolution,
    Resolutions,
    range_values,
    same_stages,
)
from gen5nas.spec.yaml_input import read_yaml as read_yaml  # re-exported: the one reader
from gen5nas.spec.yaml_input import read_yaml_documents as read_yaml_documents


class ArchSetting(SpecModel):
    """The seed's ``arch_setting``: one list entry per stage for the per-stage keys."""

    # The API server's copy of _check_consistency. CEL has no range(): the stage indices and
    # depths are literal lists (both are bounded, so the cost estimate is too).
    model_config = cel_rules(
        *(same_stages(n) for n in ("kernelSize", "numOutChannels", "expandRatio", "stride")),
        Cel(
            f"{STAGE_INDEXES}.all(i, i >= size(self.numBlocks) || i >= size(self.expandRatio) || "
            f"self.numBlocks[i][2] < 1 || {DEPTH_VALUES}.all(d, d < self.numBlocks[i][0] || "
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
            raise errors_at(cls.__name__, errors)
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

    def sample(
        self,
        rng: random.Random,
        pick_width: Callable[[list[int], random.Random], int] | None = None,
    ) -> Arch:
        """A uniformly random subnet (each dimension independently; the expand ratio follows
        the sampled depth through the CompOFA table). ``pick_width`` draws every width (first,
        stages, last) from its values instead of a uniform choice, in the same order."""
        s = self.arch_setting
        width = pick_width or (lambda values, r: r.choice(values))
        return Arch(
            resolution=rng.choice(self.input_resizer_cfg),
            first_num_out_channels=width(range_values(s.first_num_out_channels), rng),
            last_num_out_channels=width(range_values(s.last_num_out_channels), rng),
            stages=[
                self._stage(
                    i,
                    rng.choice(range_values(s.num_blocks[i])),
                    rng.choice(range_values(s.kernel_size[i])),
                    width(range_values(s.num_out_channels[i]), rng),
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

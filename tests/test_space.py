"""The search-space spec: validation messages, extremes, sampling, membership, size, arch files."""

from __future__ import annotations

import copy
import itertools
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gen5nas.errors import ArchError, SpecError
from gen5nas.spec import Arch, SearchSpace, StageArch, load_arch, load_space, save_arch
from gen5nas.spec.space import parse_model, range_values

TINY = load_space("mobilenetv2_tiny")
BASE: dict[str, Any] = TINY.model_dump(mode="json", by_alias=False)


def setting(data: dict[str, Any]) -> dict[str, Any]:
    return data["arch_setting"]


def mutate(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    change(data)
    return data


# (case, mutation, field path the error must name, words the message must contain)
INVALID: list[tuple[str, Callable[[dict[str, Any]], Any], str, str]] = [
    (
        "min > max",
        lambda d: setting(d)["num_blocks"].__setitem__(1, [3, 2, 1]),
        "arch_setting.num_blocks[1]",
        "greater than max",
    ),
    (
        "step misses max",
        lambda d: setting(d)["num_blocks"].__setitem__(1, [1, 4, 2]),
        "arch_setting.num_blocks[1]",
        "does not land on max",
    ),
    (
        "zero step",
        lambda d: setting(d)["num_out_channels"].__setitem__(2, [8, 16, 0]),
        "arch_setting.num_out_channels[2]",
        "step must be positive",
    ),
    (
        "even kernel",
        lambda d: setting(d)["kernel_size"].__setitem__(2, [2, 4, 2]),
        "arch_setting.kernel_size[2]",
        "odd",
    ),
    (
        "even kernel inside range",
        lambda d: setting(d)["kernel_size"].__setitem__(2, [3, 5, 1]),
        "arch_setting.kernel_size[2]",
        "includes 4",
    ),
    (
        "non-positive kernel",
        lambda d: setting(d)["kernel_size"].__setitem__(2, [-1, 3, 2]),
        "arch_setting.kernel_size[2]",
        "positive",
    ),
    (
        "table misses a depth",
        lambda d: setting(d)["expand_ratio"][3].pop("2"),
        "arch_setting.expand_ratio[3]",
        "has no ratio for num_blocks [2] (stage 3 allows num_blocks [1, 2, 3]",
    ),
    (
        "empty table",
        lambda d: setting(d)["expand_ratio"].__setitem__(0, {}),
        "arch_setting.expand_ratio[0]",
        "empty table",
    ),
    (
        "non-positive ratio",
        lambda d: setting(d)["expand_ratio"].__setitem__(0, {"1": 0}),
        "arch_setting.expand_ratio[0]",
        "ratio for num_blocks=1 is 0.0; allowed: a number >= 1",
    ),
    (
        # The supernet builds no expand conv below ratio 1: it would silently run ratio 1.
        "ratio below 1",
        lambda d: setting(d)["expand_ratio"].__setitem__(2, {"1": 3, "2": 0.5}),
        "arch_setting.expand_ratio[2]",
        "ratio for num_blocks=2 is 0.5; allowed: a number >= 1",
    ),
    (
        "zero channels",
        lambda d: setting(d)["num_out_channels"].__setitem__(0, [0, 8, 8]),
        "arch_setting.num_out_channels[0]",
        "positive",
    ),
    (
        "zero stem channels",
        lambda d: setting(d).__setitem__("first_num_out_channels", [0, 8, 8]),
        "arch_setting.first_num_out_channels",
        "positive",
    ),
    (
        "zero last channels",
        lambda d: setting(d).__setitem__("last_num_out_channels", [-64, 64, 64]),
        "arch_setting.last_num_out_channels",
        "positive",
    ),
    (
        "zero resolution",
        lambda d: d.__setitem__("input_resizer_cfg", [[0, 24]]),
        "input_resizer_cfg[0][0]",
        "greater than or equal to 1",
    ),
    (
        "duplicate resolution",
        lambda d: d.__setitem__("input_resizer_cfg", [[24, 24], [24, 24]]),
        "input_resizer_cfg",
        "duplicate",
    ),
    (
        "no resolutions",
        lambda d: d.__setitem__("input_resizer_cfg", []),
        "input_resizer_cfg",
        "empty",
    ),
    (
        "no stages",
        lambda d: setting(d).__setitem__("num_blocks", []),
        "arch_setting.num_blocks",
        "at least 1",
    ),
    (
        "stage lists differ",
        lambda d: setting(d)["stride"].pop(),
        "arch_setting.stride",
        "has 6 entries but num_blocks has 7",
    ),
    (
        "bad stride",
        lambda d: setting(d)["stride"].__setitem__(0, 3),
        "arch_setting.stride[0]",
        "less than or equal to 2",
    ),
    (
        "unknown nested field",
        lambda d: setting(d).__setitem__("kernel_sizes", [[3, 3, 2]]),
        "arch_setting.kernel_sizes",
        "unknown field",
    ),
    (
        "unknown top field",
        lambda d: d.__setitem__("resolution", [[24, 24]]),
        "resolution",
        "unknown field",
    ),
]


@pytest.mark.parametrize("case", [c[0] for c in INVALID])
def test_invalid_space_names_the_field(case: str) -> None:
    _, change, field, words = next(c for c in INVALID if c[0] == case)
    with pytest.raises(SpecError) as info:
        parse_model(SearchSpace, mutate(change), source="space.yaml")
    assert info.value.field == field
    message = str(info.value)
    assert message.startswith("space.yaml: invalid spec")
    assert f"{field}: " in message and words in message


def test_cross_field_errors_use_the_given_spelling_and_list_every_stage() -> None:
    data = TINY.model_dump(mode="json", by_alias=True)
    data["archSetting"]["expandRatio"][3].pop("2")
    data["archSetting"]["expandRatio"][5].pop("1")
    with pytest.raises(SpecError) as info:
        parse_model(SearchSpace, data)
    assert info.value.field == "archSetting.expandRatio[3]"
    lines = str(info.value).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == [
        "archSetting.expandRatio[3]",
        "archSetting.expandRatio[5]",
    ]


def test_the_unmodified_space_is_valid() -> None:
    assert parse_model(SearchSpace, copy.deepcopy(BASE)) == TINY


def test_camel_case_and_seed_spellings() -> None:
    data = copy.deepcopy(BASE)
    camel = {
        "archSetting": {
            "numBlocks": setting(data)["num_blocks"],
            "kernelSize": setting(data)["kernel_size"],
            "numOutChannels": setting(data)["num_out_channels"],
            "expandRatio": setting(data)["expand_ratio"],
            "stride": setting(data)["stride"],
            "firstNumOutChannels": setting(data)["first_num_out_channels"],
            "lastNumOutChannels": setting(data)["last_num_out_channels"],
        },
        # The seed nests the list under input_sizes.
        "inputResizerCfg": {"input_sizes": data["input_resizer_cfg"]},
    }
    assert parse_model(SearchSpace, camel) == TINY


def test_one_expand_table_for_all_stages() -> None:
    data = copy.deepcopy(BASE)
    setting(data)["num_blocks"] = [[1, 2, 1]] * 7
    setting(data)["expand_ratio"] = {1: 3, 2: 6}  # the seed's own shorthand
    space = parse_model(SearchSpace, data)
    assert space.arch_setting.expand_ratio == [{1: 3.0, 2: 6.0}] * 7


def test_unknown_named_space() -> None:
    with pytest.raises(SpecError, match="mobilenetv2_tiny"):
        load_space("no_such_space")


# ---- extremes, sampling, membership ------------------------------------------------------------
def test_max_and_min() -> None:
    big, small = TINY.max(), TINY.min()
    assert big.resolution == (32, 32) and small.resolution == (24, 24)
    assert [s.num_blocks for s in big.stages] == [1, 2, 2, 3, 2, 2, 1]
    assert [s.expand_ratio for s in big.stages] == [1, 4, 4, 6, 4, 4, 4]
    assert [s.expand_ratio for s in small.stages] == [1, 3, 3, 3, 3, 3, 4]
    assert big.first_num_out_channels == 16 and small.last_num_out_channels == 64
    assert TINY.contains(big) and TINY.contains(small)


def test_samples_are_members_and_follow_the_table() -> None:
    rng = random.Random(0)
    seen = set()
    for _ in range(200):
        arch = TINY.sample(rng)
        assert TINY.contains(arch) and TINY.why_not(arch) is None
        for i, stage in enumerate(arch.stages):
            assert stage.expand_ratio == TINY.arch_setting.expand_ratio[i][stage.num_blocks]
        seen.add(arch.key())
    assert len(seen) > 150  # random, not stuck
    assert TINY.sample(random.Random(9)) == TINY.sample(random.Random(9))  # seeded


def test_why_not_and_check_name_the_dimension() -> None:
    stages = list(TINY.max().stages)
    stages[3] = stages[3].model_copy(update={"expand_ratio": 4.0})
    arch = TINY.max().model_copy(update={"stages": stages})
    assert not TINY.contains(arch)
    reason = TINY.why_not(arch)
    assert reason is not None and reason.startswith("stages[3].expand_ratio:")
    assert "num_blocks=3 requires expand_ratio 6" in reason
    with pytest.raises(ArchError) as info:
        TINY.check(arch)
    assert info.value.dimension == "stages[3].expand_ratio"
    assert TINY.check(TINY.min()) == TINY.min()


def test_choices_round_trip() -> None:
    arch = TINY.sample(random.Random(2))
    choices = {}
    for name, options in TINY.iter_choices():
        value = arch.resolution if name == "resolution" else _dig(arch, name)
        assert value in options
        choices[name] = value
    assert TINY.arch_from_choices(choices) == arch


def _dig(arch: Arch, name: str) -> Any:
    if name.startswith("stages["):
        index, field = name.removeprefix("stages[").split("].")
        return getattr(arch.stages[int(index)], field)
    return getattr(arch, name)


# ---- size --------------------------------------------------------------------------------------
def test_default_space_size() -> None:
    space = load_space()
    coupled, free = space.size(), space.size(free_expand_ratio=True)
    assert coupled == 5_308_416
    assert free == 254_803_968
    assert free > coupled


def test_size_matches_brute_force_on_a_small_space() -> None:
    space = parse_model(
        SearchSpace,
        {
            "arch_setting": {
                "num_blocks": [[1, 2, 1], [2, 4, 2]],
                "kernel_size": [[3, 5, 2], [3, 3, 2]],
                "num_out_channels": [[8, 16, 8], [16, 16, 8]],
                "expand_ratio": [{1: 3, 2: 6}, {2: 4, 4: 4}],
                "stride": [1, 2],
                "first_num_out_channels": [8, 8, 8],
                "last_num_out_channels": [32, 64, 32],
            },
            "input_resizer_cfg": [[24, 24], [32, 24]],
        },
    )
    setting_ = space.arch_setting
    ratios = [sorted(set(t.values())) for t in setting_.expand_ratio]
    coupled, free = set(), set()
    per_stage = [
        itertools.product(
            range_values(setting_.num_blocks[i]),
            range_values(setting_.kernel_size[i]),
            ratios[i],
            range_values(setting_.num_out_channels[i]),
        )
        for i in range(setting_.num_stages)
    ]
    stage_options: list[list[tuple[int, int, float, int]]] = [list(p) for p in per_stage]
    for (res, first, last), stages in itertools.product(
        itertools.product(
            space.input_resizer_cfg,
            range_values(setting_.first_num_out_channels),
            range_values(setting_.last_num_out_channels),
        ),
        itertools.product(*stage_options),
    ):
        arch = Arch(
            resolution=res,
            first_num_out_channels=first,
            last_num_out_channels=last,
            stages=[
                StageArch(num_blocks=d, kernel_size=k, expand_ratio=e, num_out_channels=c)
                for d, k, e, c in stages
            ],
        )
        free.add(arch.key())
        if space.contains(arch):
            coupled.add(arch.key())
    assert space.size() == len(coupled) == 2 * 2 * (2 * 2 * 2) * (2 * 1 * 1)
    # Free ratios: stage 0 takes either ratio at either depth; stage 1 has one distinct ratio.
    assert space.size(free_expand_ratio=True) == len(free) == 2 * space.size()


# ---- arch files --------------------------------------------------------------------------------
def test_arch_yaml_round_trip(tmp_path: Path) -> None:
    arch = TINY.sample(random.Random(5)).model_copy(update={"resolution": (32, 24)})
    path = save_arch(arch, tmp_path / "fix_subnets" / "trial_3.yaml")
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    text = path.read_text()
    assert "expand_ratio: 4," in text and "expand_ratio: 4.0" not in text  # ints stay ints
    loaded = load_arch(path)
    assert loaded == arch and TINY.contains(loaded)


def test_arch_yaml_embedded_and_errors(tmp_path: Path) -> None:
    arch = TINY.min()
    doc = tmp_path / "trial.yaml"
    doc.write_text(
        "number: 3\narch:\n" + "".join(f"  {line}\n" for line in arch.to_yaml().splitlines())
    )
    assert load_arch(doc) == arch
    with pytest.raises(SpecError, match="not found"):
        load_arch(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("resolution: [24, 24\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_arch(broken)
    bad = tmp_path / "bad.yaml"
    bad.write_text(arch.to_yaml().replace("kernel_size: 3", "kernel_size: three", 1))
    with pytest.raises(SpecError) as info:
        load_arch(bad)
    assert str(bad) in str(info.value) and "stages[0].kernel_size" in str(info.value)


def test_space_and_arch_files_report_yaml_problems_naming_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "space.yaml"
    broken.write_text("arch_setting: {num_blocks: [[1, 2, 1]\n")
    with pytest.raises(SpecError, match=f"{broken}: not valid YAML"):
        load_space(broken)
    two = tmp_path / "two.yaml"
    two.write_text(load_space("mobilenetv2_tiny").min().to_yaml() + "---\n{}\n")
    with pytest.raises(SpecError, match="2 YAML documents; expected one arch file"):
        load_arch(two)

"""``gen5nas space``: inspect a search space (its size, extremes, random members)."""

from __future__ import annotations

import argparse
import random

from gen5nas.spec import load_space, named_spaces
from gen5nas.spec.space import Arch


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "space",
        help="inspect a search space: size, max/min subnets, random samples",
        description="Print a search space's size (with the CompOFA expand table and with free "
        "expand ratios) and its max, min and random subnets as fix_subnets YAML.",
    )
    p.add_argument(
        "space",
        nargs="?",
        default="mobilenetv2_sample1",
        help=f"a shipped space {named_spaces()} or a YAML file",
    )
    p.add_argument("--sample", type=int, default=0, metavar="N", help="print N random subnets")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    space = load_space(args.space)
    print(f"space: {args.space}")
    print(f"stages: {space.arch_setting.num_stages}")
    print(f"subnets (CompOFA expand table): {space.size():,}")
    print(f"subnets (free expand ratio):    {space.size(free_expand_ratio=True):,}")
    _print_arch("max", space.max())
    _print_arch("min", space.min())
    rng = random.Random(args.seed)
    for i in range(args.sample):
        _print_arch(f"sample {i}", space.sample(rng))
    return 0


def _print_arch(title: str, arch: Arch) -> None:
    print(f"--- # {title}: {arch.summary()}")
    print(arch.to_yaml(), end="")

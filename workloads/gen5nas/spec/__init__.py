"""Spec models shared by the CLI and the operator (pydantic, torch-free)."""

from gen5nas.spec.space import Arch, ArchSetting, SearchSpace, StageArch, load_arch, save_arch
from gen5nas.spec.spaces import load_space, named_spaces

__all__ = [
    "Arch",
    "ArchSetting",
    "SearchSpace",
    "StageArch",
    "load_arch",
    "load_space",
    "named_spaces",
    "save_arch",
]

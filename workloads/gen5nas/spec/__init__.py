"""Spec models shared by the CLI and the operator (pydantic, torch-free).

Where things live: the search space and an arch in :mod:`.space`, the validators of its fields
(ranges bounded before expansion, kernel ranges, ratio tables, resolutions) in
:mod:`.space_rules`, the spec base model and the error that names each field in
:mod:`.model_base`, the limits in :mod:`.bounds`, the bounded YAML reader in :mod:`.yaml_input`; the
shipped spaces by name in :mod:`.spaces`; the plan of a subnet's layers (per-block widths,
kernels, strides, skips), the activation names and ``make_divisible`` in :mod:`.plan`, which
the supernet (:mod:`gen5nas.supernet`: elastic ops, blocks, model) and the estimator's ONNX arch
graph both build from; the step specs in :mod:`.training`, :mod:`.search`, :mod:`.export`, with
what they share in :mod:`.common`.
"""

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

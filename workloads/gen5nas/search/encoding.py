"""Architectures as Optuna parameters.

Every searchable dimension of the space is one *unconditional* categorical parameter (the depth
included; the expand ratio is not a parameter, it is read from the CompOFA table), so a sampler
never sees a conditional space and every suggestion is inside the space. The resolution, a
``(height, width)`` pair, is encoded as the string ``"HxW"`` (Optuna categoricals hold scalars).
"""

from __future__ import annotations

from typing import Any

from optuna.distributions import CategoricalDistribution
from optuna.trial import BaseTrial

from gen5nas.spec.space import Arch, SearchSpace


def _encode(dimension: str, value: Any) -> Any:
    if dimension == "resolution":
        h, w = value
        return f"{h}x{w}"
    return value


def _decode(dimension: str, value: Any) -> Any:
    if dimension == "resolution":
        h, w = str(value).split("x")
        return (int(h), int(w))
    return value


def distributions(space: SearchSpace) -> dict[str, CategoricalDistribution]:
    """One categorical per searchable dimension, in the space's fixed order."""
    return {
        name: CategoricalDistribution([_encode(name, c) for c in choices])
        for name, choices in space.iter_choices()
    }


def suggest_arch(trial: BaseTrial, space: SearchSpace) -> Arch:
    """Ask ``trial`` for a value of every dimension and build the arch."""
    params = {
        name: trial.suggest_categorical(name, dist.choices)
        for name, dist in distributions(space).items()
    }
    return params_to_arch(space, params)


def params_to_arch(space: SearchSpace, params: dict[str, Any]) -> Arch:
    """The arch of a trial's params (raises ArchError when they are not in the space)."""
    return space.arch_from_choices({name: _decode(name, v) for name, v in params.items()})


def arch_to_params(space: SearchSpace, arch: Arch) -> dict[str, Any]:
    """The params that make :func:`suggest_arch` return ``arch`` (for ``enqueue_trial``)."""
    space.check(arch)
    params: dict[str, Any] = {
        "resolution": _encode("resolution", arch.resolution),
        "first_num_out_channels": arch.first_num_out_channels,
        "last_num_out_channels": arch.last_num_out_channels,
    }
    for i, stage in enumerate(arch.stages):
        params[f"stages[{i}].num_blocks"] = stage.num_blocks
        params[f"stages[{i}].kernel_size"] = stage.kernel_size
        params[f"stages[{i}].num_out_channels"] = stage.num_out_channels
    return params

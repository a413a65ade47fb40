"""Stop a training whose numbers stopped being numbers.

A diverging run (too high a learning rate, an overflow) produces a NaN or infinite loss; one
more optimizer step spreads it into every weight, and a checkpoint written then would be the
one a rerun resumes from. :func:`check_finite_step` runs after the backward pass and before
the optimizer step, so the weights stay those of the last good step; :func:`assert_finite_state`
runs before any checkpoint is written, so no checkpoint ever holds a non-finite weight.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from gen5nas.errors import Gen5NasError

ADVICE = (
    "the last checkpoint is untouched: lower optimizer.lr (or retrain.lr), raise "
    "warmupEpochs or set gradClipNorm, then rerun to resume from it"
)


class NonFiniteError(Gen5NasError):
    """A loss or a weight became NaN or infinite."""


def check_finite_step(losses: Mapping[str, Tensor], epoch: int, iteration: int) -> None:
    """Raise when any per-pass loss of this step is NaN or infinite (one device sync).

    ``epoch`` and ``iteration`` are 1-based, as the log lines print them."""
    if not losses:
        return
    values = torch.stack([v.detach().float().reshape(()) for v in losses.values()])
    if bool(torch.isfinite(values).all()):
        return
    bad = {k: float(v) for k, v in losses.items() if not torch.isfinite(v).all()}
    raise NonFiniteError(
        f"the training loss became non-finite at epoch {epoch}, iteration {iteration} "
        f"({bad}); {ADVICE}"
    )


def non_finite_tensors(state_dict: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors of ``state_dict`` holding a NaN or an infinity."""
    return [
        name
        for name, value in state_dict.items()
        if isinstance(value, Tensor)
        and value.is_floating_point()
        and not bool(torch.isfinite(value).all())
    ]


def assert_finite_state(state: Mapping[str, Any]) -> None:
    """Refuse to checkpoint a state whose ``model`` weights are not all finite.

    ``state`` is a checkpoint dict (``model``, ``epoch``, ``iteration``) or a bare state dict."""
    model = state.get("model", state)
    bad = non_finite_tensors(model) if isinstance(model, Mapping) else []
    if bad:
        where = f"epoch {state.get('epoch', '?')}, iteration {state.get('iteration', '?')}"
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise NonFiniteError(
            f"refusing to write a checkpoint with non-finite weights at {where} ({shown}); {ADVICE}"
        )

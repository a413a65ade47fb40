"""The export's input-shape policy, torch-free (the CLI checks the argument before any import).

The exported ONNX input is ``N,3,H,W`` with ``(H, W) == arch.resolution``: the supernet resizes
its input to each subnet's resolution, an extracted subnet does not, so a deployment resizes
images to the arch's resolution before the model. Any other shape is refused, naming it.
"""

from __future__ import annotations

from collections.abc import Sequence

from gen5nas.errors import SpecError
from gen5nas.spec import Arch


def parse_input_shape(text: str) -> list[int]:
    """``"1,3,224,224"`` (the seed's form) -> ``[1, 3, 224, 224]``."""
    try:
        dims = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        dims = []
    if len(dims) != 4:
        raise SpecError(
            f"{text!r} is not N,C,H,W (four integers, e.g. 1,3,224,224)", field="inputShape"
        )
    return dims


def check_input_shape(arch: Arch, shape: Sequence[int] | None) -> tuple[int, int, int, int]:
    """The export input shape: ``shape`` if it fits the arch, else a SpecError; default
    ``1,3,H,W`` at the arch's resolution."""
    h, w = arch.resolution
    if shape is None:
        return (1, 3, h, w)
    if len(shape) != 4:
        raise SpecError(f"{list(shape)} is not N,C,H,W", field="inputShape")
    n, c, sh, sw = (int(v) for v in shape)
    if n < 1:
        raise SpecError(f"batch size {n} must be >= 1", field="inputShape")
    if c != 3:
        raise SpecError(f"{c} channels given; the subnet takes 3 (RGB)", field="inputShape")
    if (sh, sw) != (h, w):
        raise SpecError(
            f"{n},{c},{sh},{sw} does not match the arch's resolution [{h}, {w}]: an exported "
            f"subnet takes N,3,{h},{w} (it does not resize its input as the supernet does); "
            f"use {n},3,{h},{w} or omit inputShape",
            field="inputShape",
        )
    return (n, c, h, w)

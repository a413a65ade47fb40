"""ONNX export of a (static) subnet, checked with onnx's full checker, written atomically.

Exporter choice. PyTorch has two exporters. The TorchScript one (``dynamo=False``) traces the
model, emits exactly the requested opset (17 by default), folds BN constants and takes ~2 s for
the largest MobileNetV2 subnet on 2 CPU cores. The torch.export one (``dynamo=True``, the
default since torch 2.9) has no opset below 18 (its down-conversion to 17 fails on
Squeeze/Unsqueeze axes and silently keeps 18), writes weights to a side file unless told not
to, and takes several times longer (7 s against 2 s for the largest subnet, 10 s against
0.3 s for a tiny one), which matters to the PPA estimator exporting one model per arch. So
``exporter="auto"`` uses the TorchScript exporter while this torch has it and falls back to the
torch.export one (at opset >= 18) once it is removed; either can be forced.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import onnx
import torch
from torch import Tensor, nn

from gen5nas.atomic import atomic_write_bytes
from gen5nas.spec import Arch, SearchSpace

Exporter = Literal["auto", "torchscript", "dynamo"]
INPUT_NAME = "input"
OUTPUT_NAME = "output"


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _torchscript_exporter_available() -> bool:
    try:
        from torch.onnx import utils

        return hasattr(utils, "export")
    except ImportError:
        return False


def output_tensors(outputs: Tensor | Sequence[Tensor]) -> list[Tensor]:
    """A model's outputs as a list: one tensor, or the fields of a tuple (a detector's raw head
    outputs)."""
    return [outputs] if isinstance(outputs, Tensor) else list(outputs)


def output_names(outputs: Tensor | Sequence[Tensor]) -> list[str]:
    """The ONNX output names of a model's outputs: ``output`` for one tensor, the field names
    of a NamedTuple, else ``output_0``, ``output_1``..."""
    if isinstance(outputs, Tensor):
        return [OUTPUT_NAME]
    fields = getattr(outputs, "_fields", None)
    return list(fields) if fields else [f"{OUTPUT_NAME}_{i}" for i in range(len(outputs))]


def onnx_bytes(
    model: nn.Module,
    input_shape: tuple[int, ...],
    opset: int = 17,
    dynamic_batch: bool = False,
    exporter: Exporter = "auto",
) -> bytes:
    """The serialised ONNX model of ``model`` (in eval mode) fed a float32 ``input_shape``
    tensor; input ``input``, outputs named by :func:`output_names`, batch axis named ``batch``
    if dynamic.
    Raises ``onnx.checker.ValidationError`` if the result does not pass the full check."""
    if exporter == "auto":
        exporter = "torchscript" if _torchscript_exporter_available() else "dynamo"
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    example = torch.randn(*input_shape, device=device)
    with _eval_mode(model), torch.no_grad():
        names = output_names(model(example))
        if exporter == "torchscript":
            data = _export_torchscript(model, example, opset, dynamic_batch, names)
        else:
            data = _export_dynamo(model, example, max(opset, 18), dynamic_batch, names)
    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto, full_check=True)
    return data


def _export_torchscript(
    model: nn.Module, example: torch.Tensor, opset: int, dynamic_batch: bool, names: list[str]
) -> bytes:
    buffer = io.BytesIO()
    axes = {name: {0: "batch"} for name in [INPUT_NAME, *names]} if dynamic_batch else None
    with warnings.catch_warnings():
        # The deprecation notice is addressed to us (see the module docstring), not the user.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(
            model,
            (example,),
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to a file object
            opset_version=opset,
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=names,
            dynamic_axes=axes,
            do_constant_folding=True,
        )
    return buffer.getvalue()


def _export_dynamo(
    model: nn.Module, example: torch.Tensor, opset: int, dynamic_batch: bool, names: list[str]
) -> bytes:
    shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    program = torch.onnx.export(
        model,
        (example,),
        opset_version=opset,
        dynamo=True,
        external_data=False,
        input_names=[INPUT_NAME],
        output_names=names,
        dynamic_shapes=shapes,
        verbose=False,
    )
    assert program is not None
    return program.model_proto.SerializeToString()


def export_onnx(
    model: nn.Module,
    input_shape: tuple[int, ...],
    path: str | os.PathLike[str],
    opset: int = 17,
    dynamic_batch: bool = False,
    exporter: Exporter = "auto",
) -> Path:
    """Write ``model`` as ONNX to ``path`` and return the path.

    The model is exported and fully checked in memory first, then written to a temporary file
    in the same directory and renamed over ``path``: a failure leaves no file (and an existing
    ``path`` untouched).
    """
    data = onnx_bytes(model, input_shape, opset, dynamic_batch, exporter)
    return atomic_write_bytes(Path(path), data)


def arch_onnx_bytes(
    space: SearchSpace,
    arch: Arch,
    num_classes: int = 1000,
    batch_size: int = 1,
    opset: int = 17,
    *,
    task: str = "classification",
    activation: str = "relu6",
) -> bytes:
    """ONNX of a randomly initialised static subnet of ``task`` for ``arch``, as the task
    exports it (:meth:`gen5nas.tasks.base.Task.export_wrapper`, raw outputs: a classifier's
    logits, a detector's three head tensors), at a static ``batch_size`` x 3 x
    ``arch.resolution``. Weights do not change latency or energy, so the PPA estimator can
    cost an arch without a checkpoint. Raises :class:`ArchError` for an arch outside
    ``space``, :class:`gen5nas.errors.SpecError` for a task that is not registered."""
    from gen5nas.tasks.base import get_task

    space.check(arch)
    exported = get_task(task)
    supernet = _random_supernet(exported.name, space.model_dump_json(), num_classes, activation)
    # Extraction sets the supernet's active arch for a moment, and torch.onnx's exporter keeps
    # global state: one arch at a time (an estimator server asks from several threads).
    with _RANDOM_SUPERNET_LOCK, warnings.catch_warnings():
        subnet = exported.extract(supernet, arch)
        # Shape reads the tracer turns into constants: they are, at this static shape.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return onnx_bytes(exported.export_wrapper(subnet), (batch_size, 3, *arch.resolution), opset)


_RANDOM_SUPERNET_LOCK = threading.Lock()


@functools.lru_cache(maxsize=4)
def _random_supernet(task: str, space_json: str, num_classes: int, activation: str) -> nn.Module:
    """One randomly initialised supernet per task, space, classes and activation, reused:
    building it costs more than a cut. Every weight and BN statistic gets a distinct random
    offset, as training leaves them: freshly initialised ones repeat values (zero BN-folded
    biases, unit norm scales), which the exporter de-duplicates into ``Identity`` nodes that
    the cost model would read as activations (see :mod:`gen5nas.estimator.arch_graph`)."""
    from gen5nas.tasks.base import get_task

    space = SearchSpace.model_validate_json(space_json)
    model = get_task(task).build_supernet(space, num_classes, activation=activation).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            if tensor.is_floating_point():  # a positive offset keeps BN variances positive
                tensor.add_(torch.rand(tensor.shape, generator=generator) * 1e-2)
    return model

"""Export a subnet to a verified ONNX file and its JSON card.

``export_subnet(spec, work_dir)`` runs the whole step: load the supernet checkpoint, resolve
the subnet (arch file, inline arch or study trial) and check it against the checkpoint's
space, check the input shape, cut the static subnet out and recalibrate its BN (or take the
retrained one when ``retrain.enabled``), then :func:`verified_onnx`, the card, and the writes.

Guarantees of :func:`verified_onnx` and the write in ``export_subnet``: the model is exported in
memory (opset 17 up to the newest this torch exports, optionally a dynamic batch axis), passes
``onnx.checker`` with ``full_check=True``, and onnxruntime (CPU) run on REAL images agrees with
PyTorch within ``atol x max(1, max |torch|)`` (default ``atol`` 1e-4, see
:data:`gen5nas.spec.export.DEFAULT_PARITY_ATOL`); only then is the file written, to a temp file
in the target folder, fsynced and renamed. ``export_subnet`` also computes the card (cost, MACs)
before writing anything, then writes the ONNX file and at once its card: a failure at any point
leaves no new file behind (and an older ONNX + card pair at the same path untouched).

Input-shape policy: the ONNX input is ``N,3,H,W`` with ``(H, W) == arch.resolution``; the
supernet resizes its inputs, an exported subnet does not (preprocess to the arch's resolution:
resize, then normalise with ImageNet mean/std, RGB, float32 NCHW). Any other shape is refused
with an error naming the arch's resolution.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gen5nas.atomic import atomic_write_bytes, atomic_write_text
from gen5nas.data import Batch
from gen5nas.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from gen5nas.errors import Gen5NasError, SpecError
from gen5nas.export.input_shape import check_input_shape
from gen5nas.export.onnx_card import build_card, card_json, card_path_for
from gen5nas.spec.export import DEFAULT_PARITY_ATOL, MIN_OPSET, SubnetExportSpec
from gen5nas.tasks.base import Postprocess, Task

if TYPE_CHECKING:
    from gen5nas.export.prepare import PreparedSubnet
    from gen5nas.spec import Arch, SearchSpace

log = logging.getLogger(__name__)


class ExportError(Gen5NasError):
    """The exported model failed a check (onnxruntime parity); no file was written."""


@dataclass
class ExportResult:
    onnx_path: Path
    card_path: Path
    card: dict[str, Any]


# ---- real inputs and the parity check -------------------------------------------------------
def real_images(batches: Iterable[Batch], count: int) -> torch.Tensor:
    """The first ``count`` images of ``batches`` (the val loader: real, deterministic)."""
    taken: list[torch.Tensor] = []
    have = 0
    for batch in batches:
        if len(batch) == 0:
            continue
        taken.append(batch.images[: count - have].cpu())
        have += taken[-1].shape[0]
        if have >= count:
            break
    if not taken:
        raise SpecError("the validation split yielded no image for the parity check", "dataset")
    return torch.cat(taken)


def check_parity(
    onnx_data: bytes,
    model: nn.Module,
    images: torch.Tensor,
    static_batch: int | None,
    atol: float = DEFAULT_PARITY_ATOL,
) -> dict[str, Any]:
    """Run ``images`` through onnxruntime and PyTorch (CPU, fp32) and compare the outputs.

    ``static_batch``: the ONNX input's fixed batch size (images are fed in chunks of it, the last
    chunk filled up by repeating images); None for a dynamic batch (one run, every image).
    Outputs with a data-dependent first axis (a detector's boxes, scores and labels after NMS)
    are compared as sets of rows (:func:`_matched_rows`), their counts equal per chunk.
    Raises :class:`ExportError` when ``max |ort - torch| > atol x max(1, max |torch|)``.
    """
    import onnxruntime as ort

    from gen5nas.supernet.onnx_export import output_tensors

    if static_batch is not None and images.shape[0] % static_batch:
        repeats = math.ceil(static_batch / images.shape[0]) + 1
        images = images.repeat(repeats, 1, 1, 1)
        images = images[: max(1, images.shape[0] // static_batch) * static_batch]
    session = ort.InferenceSession(onnx_data, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    chunk = static_batch or images.shape[0]
    was_training = model.training
    model_cpu = model.cpu().eval()
    try:
        with torch.no_grad():
            torch_parts = [output_tensors(model_cpu(part)) for part in images.split(chunk)]
    finally:
        model.train(was_training)
    ort_parts = [
        [torch.from_numpy(o) for o in session.run(None, {input_name: part.numpy()})]
        for part in images.split(chunk)
    ]
    names = [o.name for o in session.get_outputs()]
    rows = [i for i, o in enumerate(session.get_outputs()) if _data_dependent(o.shape)]
    if rows:
        for i, (expected_part, got_part) in enumerate(zip(torch_parts, ort_parts, strict=True)):
            want = [int(expected_part[k].shape[0]) for k in rows]
            have = [int(got_part[k].shape[0]) for k in rows]
            if want != have:
                raise ExportError(
                    f"onnxruntime gives {have} rows of {[names[k] for k in rows]} for real "
                    f"image chunk {i}, PyTorch {want}; no ONNX file was written"
                )
            matched = _matched_rows([expected_part[k] for k in rows], [got_part[k] for k in rows])
            for k, tensor in zip(rows, matched, strict=True):
                got_part[k] = tensor
    per_output: dict[str, float] = {}
    max_abs, scale = 0.0, 1.0
    for i, name in enumerate(names):
        expected = torch.cat([part[i] for part in torch_parts])
        got = torch.cat([part[i] for part in ort_parts])
        diff = float((got - expected).abs().max()) if expected.numel() else 0.0
        per_output[name] = diff
        max_abs = diff if not math.isfinite(diff) else max(max_abs, diff)
        scale = max(scale, float(expected.abs().max()) if expected.numel() else 0.0)
    report: dict[str, Any] = {
        "passed": True,  # a failed check raises below: no file, no card
        "images": int(images.shape[0]),
        "max_abs_diff": max_abs,
        "tolerance": atol * scale,
        "rule": f"max|ort - torch| <= {atol:g} x max(1, max|torch|), over every output",
        "onnxruntime": ort.__version__,
    }
    if len(names) == 1:  # a classifier's logits
        report["top1_agreement"] = float((got.argmax(1) == expected.argmax(1)).float().mean())
    else:
        report["max_abs_diff_per_output"] = per_output
    if rows:
        report["rows"] = {names[k]: sum(int(p[k].shape[0]) for p in torch_parts) for k in rows}
        report["row_matching"] = (
            "outputs with a data-dependent first axis (one row per detection) are sets: each "
            "PyTorch row is compared with its nearest onnxruntime row (max |diff| over the "
            "row in every such output), the counts must be equal"
        )
    if not math.isfinite(max_abs) or max_abs > atol * scale:
        report["passed"] = False
        raise ExportError(
            f"onnxruntime output differs from PyTorch by {max_abs:.3g} on {report['images']} "
            f"real images (tolerance {atol * scale:.3g}); no ONNX file was written"
        )
    return report


def _data_dependent(shape: Sequence[Any]) -> bool:
    """An onnxruntime output shape whose first axis is neither fixed nor the batch: a
    variable number of rows (detections after NMS)."""
    return bool(shape) and not isinstance(shape[0], int) and shape[0] != "batch"


def _matched_rows(expected: list[torch.Tensor], got: list[torch.Tensor]) -> list[torch.Tensor]:
    """``got``'s rows reordered to face ``expected``'s (same count): outputs that share a row
    axis are matched jointly, each expected row in turn with the nearest free one. Rows in the
    same order but for ties (equal scores in another order) are set right."""
    n = int(expected[0].shape[0])
    if n == 0:
        return got
    flat_e = torch.cat([t.reshape(n, -1).double() for t in expected], 1)
    flat_g = torch.cat([t.reshape(n, -1).double() for t in got], 1)
    distance = (flat_e[:, None, :] - flat_g[None, :, :]).abs().amax(-1)
    order: list[int] = []
    for i in range(n):
        free = distance[i].clone()
        free[order] = math.inf
        order.append(int(free.argmin()))
    index = torch.tensor(order)
    return [t[index] for t in got]


def max_opset() -> int:
    """The newest opset that both this torch's ONNX exporter writes and onnx's checker knows."""
    import onnx
    from torch.onnx import _constants  # no public API names the exporter's range

    return min(int(_constants.ONNX_MAX_OPSET), int(onnx.defs.onnx_opset_version()))


def check_opset(opset: int) -> None:
    """Refuse an opset the exporter cannot write, before any work (torch itself fails only
    after data loading and BN calibration, with a bare RuntimeError)."""
    top = max_opset()
    if not MIN_OPSET <= opset <= top:
        raise SpecError(
            f"opset {opset} is not supported; allowed: {MIN_OPSET}..{top} (the newest this "
            f"torch {torch.__version__} exports)",
            field="opset",
        )


def verified_onnx(
    model: nn.Module,
    input_shape: tuple[int, int, int, int],
    output: str | Path,
    images: torch.Tensor,
    *,
    opset: int = MIN_OPSET,
    dynamic_batch: bool = False,
    atol: float = DEFAULT_PARITY_ATOL,
) -> tuple[bytes, dict[str, Any]]:
    """Export in memory and check (full checker + parity on ``images``); writes nothing.

    Returns the ONNX bytes and the card's ``onnx`` section (``output`` names the file there).
    """
    import onnx

    from gen5nas.supernet import onnx_bytes
    from gen5nas.supernet.onnx_export import INPUT_NAME

    output = Path(output)
    if output.suffix != ".onnx":
        raise SpecError(f"{output} must end in .onnx", field="output")
    check_opset(opset)
    model = model.cpu().eval()
    data = onnx_bytes(model, input_shape, opset=opset, dynamic_batch=dynamic_batch)
    proto = onnx.load_from_string(data)
    written_opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    parity = check_parity(data, model, images, None if dynamic_batch else input_shape[0], atol)
    batch: int | str = "batch" if dynamic_batch else input_shape[0]
    described = [_described(value) for value in proto.graph.output]
    section = {
        "file": output.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "opset": written_opset,
        "ir_version": proto.ir_version,
        "input": {"name": INPUT_NAME, "shape": [batch, *input_shape[1:]], "dtype": "float32"},
        # one output: an object (the classifier's logits); several: a list, in graph order
        "output": described[0] if len(described) == 1 else described,
        "dynamic_batch": dynamic_batch,
        "checker": "onnx.checker.check_model(full_check=True)",
        "parity": parity,
    }
    return data, section


def _described(value: Any) -> dict[str, Any]:
    """An ONNX graph output as the card shows it: name, shape (a number, ``batch``, or
    ``dynamic`` for a data-dependent axis) and dtype."""
    import onnx

    tensor = value.type.tensor_type
    shape = [
        d.dim_value
        if d.HasField("dim_value")
        else ("batch" if d.dim_param == "batch" else "dynamic")
        for d in tensor.shape.dim
    ]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
    return {"name": value.name, "shape": shape, "dtype": dtype}


def _log_written(output: Path, section: dict[str, Any]) -> None:
    log.info(
        "wrote %s (%d bytes, opset %d): onnxruntime parity max |diff| %.2g on %d real images",
        output,
        section["bytes"],
        section["opset"],
        section["parity"]["max_abs_diff"],
        section["parity"]["images"],
    )


# ---- estimated hardware cost ----------------------------------------------------------------
def check_profile(spec: SubnetExportSpec) -> None:
    """An unknown profile is bad input: refuse it before any work (in-process only; remote
    servers may serve profiles of their own)."""
    if spec.estimator_servers:
        return
    from gen5nas.estimator.profiles import ProfileRegistry

    registry = ProfileRegistry()
    if spec.profile not in registry.names():
        raise SpecError(
            f"unknown hardware profile {spec.profile!r}; available: {registry.names()}",
            field="profile",
        )


def estimate_cost(
    onnx_data: bytes, spec: SubnetExportSpec, input_shape: Sequence[int]
) -> dict[str, Any]:
    """Latency/energy of the exported model for ``spec.profile`` (batch 1): the gRPC servers if
    ``estimatorServers`` is set, else the analytical model in-process. An estimator failure is
    recorded in the card, not raised: the ONNX model is valid without it."""
    from gen5nas.supernet.onnx_export import INPUT_NAME

    shapes = {INPUT_NAME: [1, *input_shape[1:]]}
    try:
        if spec.estimator_servers:
            from gen5nas.estimator import EstimatorClient

            servers = [s.model_dump() for s in spec.estimator_servers]
            with EstimatorClient(servers, spec.profile, dict(spec.hw_config)) as client:
                est = client.estimate(onnx_data, input_shapes=shapes)
            via = f"grpc {est.endpoint}"
        else:
            from gen5nas.estimator.engine import EstimatorEngine

            est = EstimatorEngine().estimate(
                onnx_data, profile=spec.profile, hw_config=spec.hw_config, input_shapes=shapes
            )
            via = "in-process"
    except Gen5NasError as exc:
        log.warning("no hardware cost for the card: %s", exc)
        return {"profile": spec.profile, "error": str(exc)}
    return {
        "profile": est.profile,
        "backend": est.backend,
        "latency_ms": est.latency_ms,
        "energy_mj": est.energy_mj,
        "batch": 1,
        "hw_config": dict(est.hw_config),
        "estimator": est.estimator_version,
        "via": via,
        "unsupported_ops": list(est.unsupported_ops),
    }


def arch_cost_graph(
    space: SearchSpace, arch: Arch, num_classes: int, activation: str, task: Task
) -> bytes:
    """The ONNX graph of ``arch`` in ``task``'s cost scope, built as the search builds the one
    it costs (:func:`gen5nas.estimator.arch_graph.arch_onnx`): the card's ``cost`` is then the
    search's for the same arch and profile."""
    from gen5nas.estimator.arch_graph import arch_onnx

    return arch_onnx(
        space, arch, num_classes=num_classes, activation=activation, scope=task.cost_scope,
        task=task.name,
    )  # fmt: skip


# ---- the card's accuracy -------------------------------------------------------------------
def accuracy_section(
    prepared: PreparedSubnet, retrained: dict[str, float] | None
) -> dict[str, Any]:
    """The card's ``accuracy``: the task's headline metric inherited (and retrained), and its
    other metrics (:attr:`Task.extra_metrics`, e.g. a detector's AP50, AP75, AP s/m/l) where
    the evaluation gave them."""
    task = prepared.task
    metric = task.metric
    extra = [key for key in task.extra_metrics if key in prepared.inherited]
    return {
        "task": task.name,
        "metric": metric.label,
        "unit": metric.unit,
        "inherited": prepared.inherited[metric.key],
        "retrained": retrained[metric.key] if retrained else None,
        "extra_metrics": {
            key: {
                "inherited": prepared.inherited[key],
                "retrained": retrained.get(key) if retrained else None,
            }
            for key in extra
        },
        "val_images": int(prepared.inherited["images"]),
        "dataset": str(prepared.loaders.root),
        "measured_on": "val images transformed at the arch's resolution, as the ONNX expects",
        "inherited_bn_calibration_images": prepared.bn_images,
    }


def check_postprocess(spec: SubnetExportSpec, task: Task) -> Postprocess:
    """The spec's ``postprocess``, refused when the task exports no such graph."""
    mode: Postprocess = spec.postprocess.value  # type: ignore[assignment]
    if mode not in task.postprocess_modes:
        raise SpecError(
            f"postprocess {mode}: task {task.name} exports {', '.join(task.postprocess_modes)} "
            "only",
            field="postprocess",
        )
    return mode


# ---- the step ---------------------------------------------------------------------------------
def default_output(work_dir: Path, choice: Any) -> Path:
    if choice.trial is not None:
        return work_dir / f"trial_{choice.trial}.onnx"
    if choice.arch_file:
        return work_dir / f"{Path(choice.arch_file).stem}.onnx"
    return work_dir / "subnet.onnx"


def export_subnet(
    spec: SubnetExportSpec,
    work_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    output: str | Path | None = None,
    device: str | None = None,
    config_file: str | Path | None = None,
) -> ExportResult:
    """The ``gen5nas export`` step (see the module docstring). Overrides (``checkpoint``,
    ``storage``, ``study_name``, ``output``) win over the spec: the operator and the seed-like
    command line pass them."""
    from gen5nas.export.prepare import load_and_resolve, prepare_subnet
    from gen5nas.export.retrain import run_retrain
    from gen5nas.supernet import count_macs, count_params

    work_dir = Path(work_dir)
    check_profile(spec)
    check_opset(spec.opset)
    # The checks that need no data come first, so bad input fails in a second.
    resolved = load_and_resolve(spec, checkpoint=checkpoint, storage=storage, study_name=study_name)
    postprocess = check_postprocess(spec, resolved.task)
    input_shape = check_input_shape(resolved.choice.arch, spec.input_shape)
    out = Path(output or spec.output or default_output(work_dir, resolved.choice))
    if out.suffix != ".onnx":
        raise SpecError(f"{out} must end in .onnx", field="output")

    retrain_record: dict[str, Any] | None = None
    if spec.retrain.enabled:
        outcome = run_retrain(
            spec, work_dir, resolved=resolved, device=device, config_file=config_file
        )
        if not outcome.is_main:
            return ExportResult(out, card_path_for(out), {})  # rank 0 exports
        prepared, model = outcome.prepared, outcome.model
        retrain_record = outcome.record()
    else:
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        prepared = prepare_subnet(spec, work_dir, resolved, device=dev)
        model = prepared.model
    assert prepared.loaders.val is not None
    images = real_images(prepared.loaders.val, spec.parity_samples)
    # Everything the card needs is computed before any write: a failure on the way leaves
    # an older ONNX + card pair as it was, never a new ONNX beside a stale card.
    task = prepared.task
    try:
        data, onnx_section = verified_onnx(
            task.export_wrapper(model, postprocess),
            input_shape,
            out,
            images,
            opset=spec.opset,
            dynamic_batch=spec.dynamic_batch,
            atol=spec.parity_atol,
        )
    except (RuntimeError, ValueError) as exc:  # torch.onnx's errors; not a failed check
        if postprocess == "raw" or isinstance(exc, Gen5NasError):
            raise
        raise SpecError(
            f"postprocess {postprocess}: the decoding and NMS (torchvision.ops.batched_nms) "
            f"do not export at opset {spec.opset} with torch {torch.__version__} ({exc}); "
            "use another opset or postprocess: raw (NMS outside the graph, as the card says)",
            field="postprocess",
        ) from exc
    arch = prepared.choice.arch
    retrained = retrain_record["retrained"] if retrain_record else None
    accuracy = accuracy_section(prepared, retrained)
    meta = prepared.meta
    scope_graph = arch_cost_graph(
        prepared.space, arch, int(meta["num_classes"]), str(meta.get("activation") or "relu6"),
        task,
    )  # fmt: skip
    card = build_card(
        onnx=onnx_section,
        arch=arch.to_yaml_dict(),
        arch_summary=arch.summary(),
        source={
            "checkpoint": str(prepared.checkpoint),
            "num_classes": int(prepared.meta["num_classes"]),
            "classes": prepared.meta.get("classes"),
            **prepared.choice.record(),
        },
        accuracy=accuracy,
        cost={"scope": task.cost_scope, **estimate_cost(scope_graph, spec, input_shape)},
        cost_whole_model={
            "scope": f"the exported model ({out.name}, postprocess {postprocess})",
            **estimate_cost(data, spec, input_shape),
        },
        params=count_params(model),
        macs=count_macs(model, input_shape),
        extra={
            "postprocess": task.postprocess_card(model, arch.resolution, postprocess),
            "preprocessing": {
                "layout": "NCHW float32 RGB",
                "resize_to": list(arch.resolution),
                "scale": "0..1 then (x - mean) / std",
                "mean": list(IMAGENET_MEAN),
                "std": list(IMAGENET_STD),
            },
            "retrain": retrain_record,
        },
    )
    card_text = card_json(card)
    card_path = card_path_for(out)
    atomic_write_bytes(out, data)
    atomic_write_text(card_path, card_text)
    _log_written(out, onnx_section)
    return ExportResult(out, card_path, card)

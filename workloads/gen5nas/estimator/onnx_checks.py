"""Refusing an ONNX model before analysis: parse errors, what this server's ONNX cannot read,
node schemas and graph wiring, and the bounds on what one request may ask for."""

from __future__ import annotations

import onnx
from google.protobuf.message import DecodeError

from gen5nas.estimator.errors import InvalidRequest, TooLarge, check_deadline

# Bounds on what one request may ask for, checked before the work they size is done.
MAX_NODES = 200_000  # top-level nodes; large real models have a few 10k
MAX_DIM = 2**31 - 1  # one dimension of an input shape given in a request
MAX_ELEMENTS = 2**40  # one tensor (4 TiB of fp32): beyond any model a backend could run
MAX_TOTAL = 2**62  # a model's total MACs, vector ops or bytes: they travel as int64
MAX_NOTES = 20  # notes of one kind in an answer; the rest are counted


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def load_model(onnx_bytes: bytes, max_bytes: int | None = None) -> onnx.ModelProto:
    """Parse ONNX bytes; every failure is an :class:`InvalidRequest` a user can act on."""
    if not onnx_bytes:
        raise InvalidRequest("empty model: send the ONNX file's bytes (or an arch of a space)")
    if max_bytes is not None and len(onnx_bytes) > max_bytes:
        raise TooLarge(
            f"model is {_size(len(onnx_bytes))}, over this server's limit of "
            f"{_size(max_bytes)} (start the server with a larger --max-model-mb)"
        )
    model = onnx.ModelProto()
    try:
        model.ParseFromString(onnx_bytes)
    except DecodeError as exc:
        raise InvalidRequest(f"not an ONNX model (protobuf parse failed: {exc})") from None
    if not model.HasField("graph") or not model.graph.node:
        raise InvalidRequest(
            "not an ONNX model, or an empty one: no graph nodes (send a serialized ModelProto, "
            "e.g. the bytes of a .onnx file)"
        )
    check_supported(model)
    return model


def check_supported(model: onnx.ModelProto) -> None:
    """Refuse what this server's ONNX cannot read: a newer IR version or default-domain opset
    (shape inference would silently infer nothing), or more nodes than :data:`MAX_NODES`."""
    if model.ir_version > onnx.IR_VERSION:
        raise InvalidRequest(
            f"ir_version {model.ir_version} is beyond this server's ONNX {onnx.__version__} "
            f"(supports up to {onnx.IR_VERSION}); export with an older IR version"
        )
    newest = onnx.defs.onnx_opset_version()
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx") and op.version > newest:
            raise InvalidRequest(
                f"opset_import ai.onnx version {op.version} is beyond this server's ONNX "
                f"{onnx.__version__} (supports opsets up to {newest}); export with opset <= "
                f"{newest}"
            )
    if len(model.graph.node) > MAX_NODES:
        raise TooLarge(
            f"model has {len(model.graph.node)} nodes, over this server's limit of {MAX_NODES}"
        )


def _check_text(model: onnx.ModelProto) -> None:
    """Refuse names that are not UTF-8 (protobuf hands them over as bytes, not str)."""
    graph = model.graph

    def text(where: str, value: object) -> None:
        if isinstance(value, bytes):
            raise InvalidRequest(f"{where} is not valid UTF-8: {value[:40]!r}")

    for op in model.opset_import:
        text("opset_import domain", op.domain)
    for field_name in ("input", "output", "value_info", "initializer"):
        for i, item in enumerate(getattr(graph, field_name)):
            text(f"graph.{field_name}[{i}].name", item.name)
    for i, node in enumerate(graph.node):
        for key in ("name", "op_type", "domain"):
            text(f"graph.node[{i}].{key}", getattr(node, key))
        for key in ("input", "output"):
            for j, tensor in enumerate(getattr(node, key)):
                text(f"graph.node[{i}].{key}[{j}]", tensor)
        for j, attr in enumerate(node.attribute):
            text(f"graph.node[{i}].attribute[{j}].name", attr.name)


def check_nodes(model: onnx.ModelProto) -> None:
    """Each node against its op's schema (ONNX's checker, node by node: linear, and without
    the checker's whole-model rules that exported models often miss): an unknown op of the
    default domain, an unknown or mistyped attribute, a missing required input."""
    _check_text(model)
    ctx = onnx.checker.C.CheckerContext()
    ctx.ir_version = model.ir_version or onnx.IR_VERSION
    ctx.opset_imports = {op.domain: op.version for op in model.opset_import}
    graph = model.graph
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    for idx, node in enumerate(graph.node):
        if idx % 4096 == 0:
            check_deadline("checking the model's nodes")
        name = node.name or f"{node.op_type}_{idx}"
        try:
            onnx.checker.check_node(node, ctx)
        except UnicodeDecodeError:  # onnx's message quotes a string of a subgraph
            raise InvalidRequest(
                f"node {name!r} ({node.op_type}) has text that is not UTF-8"
            ) from None
        except onnx.checker.ValidationError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InvalidRequest(f"node {name!r} ({node.op_type}) is invalid: {first}") from None
        missing = [i for i in node.input if i not in available]
        if missing:
            raise InvalidRequest(
                f"node {name!r} ({node.op_type}) reads {missing}, which no input, initializer "
                f"or earlier node provides (a cycle, or nodes not in topological order)"
            )
        for out in node.output:
            if out and out in available:
                raise InvalidRequest(
                    f"node {name!r} ({node.op_type}) writes {out!r}, which an input, "
                    f"initializer or earlier node already provides (each tensor has one writer)"
                )
            available.add(out)

"""Counting each node's work (MACs, vector ops, tensors read and written) from known shapes,
and tagging the nodes a runtime folds into their producer."""

from __future__ import annotations

import math
from collections.abc import Mapping

import onnx
from onnx import TensorProto

from gen5nas.estimator.errors import InvalidRequest
from gen5nas.estimator.graph_work import NodeWork, TensorUse
from gen5nas.estimator.onnx_checks import MAX_ELEMENTS, MAX_NOTES, MAX_TOTAL
from gen5nas.estimator.op_kinds import (
    COMPUTE_KINDS,
    DATA_TYPES,
    ELEMENTWISE_OPS,
    FUSABLE_ACTIVATIONS,
    GLOBAL_POOL_OPS,
    op_kind,
)
from gen5nas.estimator.shape_infer import tensor_dims


def check_totals(nodes: list[NodeWork]) -> None:
    """Refuse totals the answer cannot carry (int64) before any costing multiplies them."""
    for what in ("macs", "vector_ops"):
        total = sum(getattr(n, what) for n in nodes)
        if total > MAX_TOTAL:
            worst = max(nodes, key=lambda n: getattr(n, what))
            raise InvalidRequest(
                f"the model's {what} ({total:.3g}) are out of range (limit {MAX_TOTAL:.3g}); "
                f"node {worst.name!r} ({worst.op_type}) alone has {getattr(worst, what):.3g}"
            )
    total = sum(t.numel for n in nodes for t in n.tensors)
    if total > MAX_TOTAL // 8:
        raise InvalidRequest(
            f"the model's tensors ({total:.3g} elements in all) are out of range (limit "
            f"{MAX_TOTAL // 8:.3g})"
        )


class NodeCounter:
    """The shapes and element types known of a graph's tensors, and the work of each node."""

    def __init__(self, graph: onnx.GraphProto, notes: list[str]) -> None:
        self.shapes: dict[str, list[int | str] | None] = {}
        self.dtypes: dict[str, int] = {}
        for vi in [*graph.input, *graph.value_info, *graph.output]:
            self.shapes[vi.name] = tensor_dims(vi.type)
            self.dtypes[vi.name] = vi.type.tensor_type.elem_type
        self.constant: set[str] = set()
        for t in graph.initializer:
            self.shapes[t.name] = [int(d) for d in t.dims]
            self.dtypes[t.name] = t.data_type
            self.constant.add(t.name)
        self.graph_io = {i.name for i in graph.input if i.name not in self.constant} | {
            o.name for o in graph.output
        }
        self.notes = list(notes)
        self.unknown_shapes: set[str] = set()
        self.noted = self.unnoted = 0  # notes of nodes whose MACs went uncounted

    def note(self, text: str) -> None:
        if self.noted < MAX_NOTES:
            self.notes.append(text)
            self.noted += 1
        else:
            self.unnoted += 1

    def numel(self, name: str) -> int:
        dims = self.shapes.get(name)
        if dims is None or any(not isinstance(d, int) for d in dims):
            self.unknown_shapes.add(name)
            return 0
        n: int = math.prod(dims)  # type: ignore[arg-type]
        if n > MAX_ELEMENTS:
            raise InvalidRequest(
                f"tensor {name!r} has shape {dims} ({n:.3g} elements): out of range, this "
                f"server analyses tensors of up to {MAX_ELEMENTS:.3g} elements"
            )
        return n

    def shape(self, name: str) -> list[int] | None:
        dims = self.shapes.get(name)
        if dims is None or any(not isinstance(d, int) for d in dims):
            return None
        return dims  # type: ignore[return-value]

    def node(self, node: onnx.NodeProto, name: str) -> NodeWork:
        """The work of one node (a Constant's output joins the known constants)."""
        op = node.op_type
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if op == "Constant":
            self.constant.update(node.output)
            for out in node.output:
                value = attrs.get("value")
                if isinstance(value, onnx.TensorProto):
                    self.shapes[out] = [int(d) for d in value.dims]
                    self.dtypes[out] = value.data_type
        work = NodeWork(name=name, op_type=op, kind=op_kind(op, node, attrs, self.shape))
        if work.kind != "view":
            for tn in node.input:
                if tn and self.dtypes.get(tn, TensorProto.FLOAT) in DATA_TYPES:
                    offchip = tn in self.constant or tn in self.graph_io
                    work.tensors.append(TensorUse(tn, self.numel(tn), offchip=offchip, write=False))
            for tn in node.output:
                if tn and self.dtypes.get(tn, TensorProto.FLOAT) in DATA_TYPES:
                    work.tensors.append(
                        TensorUse(tn, self.numel(tn), tn in self.graph_io, write=True)
                    )
        out0 = node.output[0] if node.output else ""
        out_numel = self.numel(out0) if out0 else 0
        if work.kind in COMPUTE_KINDS:
            work.outputs = out_numel
        if work.kind in ("conv", "pwconv", "dwconv"):
            w = self.shape(node.input[1]) if len(node.input) > 1 else None
            check_conv(node, name, attrs, self.shape(node.input[0]), w)
            if w is None:
                self.note(f"{name}: weight shape unknown, MACs not counted")
            elif op == "ConvTranspose":
                in_numel = self.numel(node.input[0])
                work.macs = in_numel * w[1] * math.prod(w[2:])
            else:
                work.macs = out_numel * w[1] * math.prod(w[2:])
        elif work.kind == "gemm":
            a = self.shape(node.input[0]) if node.input else None
            if a is None:
                self.note(f"{name}: input shape unknown, MACs not counted")
            else:
                k = a[0] if (op == "Gemm" and attrs.get("transA", 0)) else a[-1]
                work.macs = out_numel * k
        elif work.kind == "elementwise":
            work.vector_ops = out_numel * ELEMENTWISE_OPS.get(op, 1)
        elif work.kind == "pool":
            if op in GLOBAL_POOL_OPS:
                work.vector_ops = self.numel(node.input[0])
            else:
                work.vector_ops = out_numel * math.prod(attrs.get("kernel_shape", [1]))
        elif work.kind == "resize":
            mode = attrs.get("mode", b"nearest")
            mode = mode.decode() if isinstance(mode, bytes) else str(mode)
            work.vector_ops = out_numel * (1 if mode == "nearest" else 4)
        return work


def check_conv(
    node: onnx.NodeProto,
    name: str,
    attrs: Mapping[str, object],
    x: list[int] | None,
    w: list[int] | None,
) -> None:
    """Refuse Conv attributes that contradict each other or the tensors (ONNX's inference
    lets these through, onnxruntime refuses them at load)."""
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if auto_pad not in ("NOTSET", "") and "pads" in attrs:
        raise InvalidRequest(
            f"node {name!r} ({node.op_type}): conflicting attributes auto_pad={auto_pad} and "
            f"pads={attrs['pads']}; set only one"
        )
    group = attrs.get("group", 1)
    if not isinstance(group, int) or group < 1:
        raise InvalidRequest(f"node {name!r} ({node.op_type}): group={group!r}, must be >= 1")
    if node.op_type != "Conv" or x is None or w is None or len(x) < 2 or len(w) < 2:
        return
    if x[1] != w[1] * group or w[0] % group:
        raise InvalidRequest(
            f"node {name!r} (Conv): input has {x[1]} channels, weight shape {w} with "
            f"group={group} needs {w[1] * group} and output channels divisible by {group}"
        )


def tag_fusions(graph: onnx.GraphProto, nodes: list[NodeWork]) -> None:
    """Tag the nodes a runtime can fold into the Conv/Gemm producing their input: an activation
    (or a chain: Conv -> Add -> Relu), and a residual Add of a conv output and another tensor.
    Folding needs the producer's output to have this node as its only consumer (otherwise the
    unactivated tensor must exist in memory anyway) and not to be a graph output."""
    producer: dict[str, int] = {}
    consumers: dict[str, int] = {}
    for i, node in enumerate(graph.node):
        for t in node.output:
            producer[t] = i
        for t in node.input:
            consumers[t] = consumers.get(t, 0) + 1
    outputs = {o.name for o in graph.output}

    def folds_into(tensor: str) -> bool:
        i = producer.get(tensor)
        if i is None or consumers.get(tensor, 0) != 1 or tensor in outputs:
            return False
        return nodes[i].kind in COMPUTE_KINDS or bool(nodes[i].fusion)

    for node, work in zip(graph.node, nodes, strict=True):
        data_inputs = [t for t in node.input[:1] if t]
        if node.op_type in FUSABLE_ACTIVATIONS and data_inputs and folds_into(data_inputs[0]):
            work.fusion = "activation"
        elif node.op_type in ("Add", "Sum") and len(node.input) == 2:
            # No broadcast (two inputs and the output alike); the conv accumulates its output
            # onto the other input, so one side must be a conv's sole-consumer output.
            numels = {t.numel for t in work.tensors}
            same = len(work.tensors) == 3 and len(numels) == 1 and 0 not in numels
            if same and any(
                nodes[producer[t]].kind in COMPUTE_KINDS for t in node.input if folds_into(t)
            ):
                work.fusion = "residual_add"

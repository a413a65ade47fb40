"""Tensor shapes of an ONNX graph: ONNX's shape inference, plus assumed shapes past the ops it
knows nothing of (custom ops), so the tensors downstream are counted."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import onnx
from onnx import shape_inference

from gen5nas.estimator.errors import InvalidRequest, check_deadline
from gen5nas.estimator.onnx_checks import MAX_NOTES
from gen5nas.estimator.op_kinds import OTHER_KIND, op_kind


def tensor_dims(type_proto: onnx.TypeProto) -> list[int | str] | None:
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    dims: list[int | str] = []
    for d in type_proto.tensor_type.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or "?")
    return dims


def set_tensor_dims(type_proto: onnx.TypeProto, dims: Sequence[int]) -> None:
    shape = type_proto.tensor_type.shape
    del shape.dim[:]
    for v in dims:
        shape.dim.add().dim_value = int(v)


def infer_shapes(model: onnx.ModelProto, strict: bool = True) -> onnx.ModelProto:
    """Strict: a node whose inputs do not fit (a MatMul of mismatched dims) is refused rather
    than counted with made-up shapes; ops without a schema (custom) pass."""
    try:
        return shape_inference.infer_shapes(model, strict_mode=strict, data_prop=True)
    except Exception as exc:  # onnx raises several types; all mean the same to a user
        if not strict:
            return model
        raise InvalidRequest(f"ONNX shape inference failed: {exc}") from None


def propagate_unknown_op_shapes(model: onnx.ModelProto) -> list[str]:
    """Give the outputs ONNX inferred nothing for, of ops unknown to the analytical model
    (custom ops, mostly), their first input's type and shape, so that the tensors downstream get
    shapes (and bytes, MACs) instead of counting 0. An assumption: right for elementwise-like
    custom ops (activations, quantisers), wrong for ones that change the shape; each use is
    noted. Outputs with a partial shape (data-dependent dims) are left alone.

    One pass in graph (topological) order: a known op downstream of an assumed shape is
    inferred on its own (``infer_node_outputs``), so a chain of unknown and known ops costs one
    step per node, not one whole-graph inference per unknown op. Changes ``model``."""
    graph = model.graph
    infos = {vi.name: vi for vi in [*graph.input, *graph.value_info, *graph.output]}
    types = {name: vi.type for name, vi in infos.items()}
    for t in graph.initializer:
        types[t.name] = onnx.helper.make_tensor_type_proto(t.data_type, list(t.dims))
    opsets = {op.domain or "": op.version for op in model.opset_import}
    opsets.setdefault("ai.onnx", opsets.get("", 1))
    notes = []
    assumed_ops = 0
    changed: set[str] = set()  # tensors given a shape by this pass
    for idx, node in enumerate(graph.node):
        if idx % 4096 == 0:
            check_deadline("propagating shapes past unknown ops")
        missing = [
            o for o in node.output if o and (o not in types or tensor_dims(types[o]) is None)
        ]
        if not missing or not node.input:
            continue
        if op_kind(node.op_type, node, {}, lambda _: None) != OTHER_KIND:
            if any(i in changed for i in node.input):
                inferred = infer_node(node, types, opsets, model.ir_version)
                for out, tp in inferred.items():
                    if out in missing and tensor_dims(tp) is not None:
                        set_tensor_type(graph, infos, types, out, tp)
                        changed.add(out)
            continue
        src = types.get(node.input[0])
        if (
            src is None
            or tensor_dims(src) is None
            or any(a.g.node or a.graphs for a in node.attribute)
        ):
            continue  # control flow (Loop, If, Scan): its outputs are not shaped like input 0
        for out in missing:
            assumed = onnx.TypeProto()
            assumed.CopyFrom(src)
            declared = types[out].tensor_type.elem_type if out in types else 0
            if declared:  # a declared element type stays; only the shape is assumed
                assumed.tensor_type.elem_type = declared
            set_tensor_type(graph, infos, types, out, assumed)
            changed.add(out)
        name = node.name or f"{node.op_type}_{idx}"
        assumed_ops += 1
        if assumed_ops <= MAX_NOTES:
            notes.append(
                f"{name}: ONNX shape inference gave {node.op_type}'s outputs {missing} no "
                f"shape; assumed its first input's shape {tensor_dims(src)}"
            )
    if assumed_ops > MAX_NOTES:  # the answer's notes stay short, whatever the graph
        notes.append(
            f"... and {assumed_ops - MAX_NOTES} more unknown ops assumed their first input's "
            f"shape ({assumed_ops} in all)"
        )
    return notes


def set_tensor_type(graph, infos, types, name: str, tp: onnx.TypeProto) -> None:  # type: ignore[no-untyped-def]
    vi = infos.get(name)
    if vi is None:
        vi = infos[name] = graph.value_info.add(name=name)
    vi.type.CopyFrom(tp)
    types[name] = vi.type


def infer_node(
    node: onnx.NodeProto, types: Mapping[str, onnx.TypeProto], opsets: Mapping[str, int], ir: int
) -> dict[str, onnx.TypeProto]:
    """ONNX's shape inference of one node from its input types; {} where it has none."""
    domain = node.domain or ""
    try:
        schema = onnx.defs.get_schema(node.op_type, opsets.get(domain, 1), domain)
        inputs = {i: types[i] for i in node.input if i in types}
        ops = [onnx.helper.make_opsetid(d, v) for d, v in opsets.items() if d != "ai.onnx"]
        return shape_inference.infer_node_outputs(
            schema, node, inputs, opset_imports=ops, ir_version=ir
        )
    except Exception:  # no schema, or inputs it cannot infer from: no shape, counted as 0
        return {}

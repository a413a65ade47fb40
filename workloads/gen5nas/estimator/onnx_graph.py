"""What each node of an ONNX model does: MACs, vector ops and the tensors it reads and writes.

Shape inference first (``shape_infer.py``), then per node a count that is independent of
the hardware. The analytical model (``analytical.py``) turns these counts into cycles for a
profile; keeping them apart lets one analysis serve every profile and every calibration step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import onnx

from gen5nas.estimator.errors import InvalidRequest, check_deadline
from gen5nas.estimator.graph_work import GraphWork, NodeWork, model_sha256
from gen5nas.estimator.node_count import NodeCounter, check_totals, tag_fusions
from gen5nas.estimator.onnx_checks import MAX_DIM, check_nodes, load_model
from gen5nas.estimator.shape_infer import (
    infer_shapes,
    propagate_unknown_op_shapes,
    set_tensor_dims,
    tensor_dims,
)


def analyze(
    onnx_bytes: bytes,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    max_bytes: int | None = None,
) -> GraphWork:
    """Shape-infer ``onnx_bytes`` and count each node's work. ``input_shapes`` fixes symbolic
    input dimensions (refused when one is left symbolic, with the input named)."""
    model = load_model(onnx_bytes, max_bytes)
    check_nodes(model)
    return analyze_model(model, model_sha256(onnx_bytes), input_shapes)


def analyze_model(
    model: onnx.ModelProto,
    sha256: str,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> GraphWork:
    """:func:`analyze` of a parsed model (changed in place: given input shapes are set);
    ``sha256`` identifies it in the result. Only tensor shapes are read, never values, so
    initializers may come without data (``arch_graph``'s ``weights="none"``)."""
    graph = model.graph
    input_shapes = {k: [int(v) for v in dims] for k, dims in (input_shapes or {}).items()}
    init_names = {t.name for t in graph.initializer}
    real_inputs = [i for i in graph.input if i.name not in init_names]
    unknown = sorted(set(input_shapes) - {i.name for i in real_inputs})
    if unknown:
        raise InvalidRequest(
            f"input_shapes names {unknown}, which the model does not have; its inputs: "
            f"{[i.name for i in real_inputs]}"
        )
    resolved: dict[str, list[int]] = {}
    for inp in real_inputs:
        dims = tensor_dims(inp.type)
        if inp.name in input_shapes:
            given = input_shapes[inp.name]
            bad = not given or any(not 0 < v <= MAX_DIM for v in given)
            if bad or (dims is not None and len(given) != len(dims)):
                raise InvalidRequest(
                    f"input_shapes[{inp.name!r}] = {given}: give {len(dims or [])} dims "
                    f"in 1..{MAX_DIM} for the model's shape {dims}"
                )
            set_tensor_dims(inp.type, given)
            resolved[inp.name] = list(given)
        elif dims is None or any(not isinstance(d, int) for d in dims):
            raise InvalidRequest(
                f"model input {inp.name!r} has a symbolic shape {dims}; give a concrete one in "
                f"the request's input_shapes, e.g. {{name: {inp.name!r}, dims: [1, 3, 224, 224]}}"
            )
        else:
            resolved[inp.name] = [int(d) for d in dims]  # type: ignore[arg-type]
    check_deadline("reading the model's inputs")
    inferred = infer_shapes(model)
    check_deadline("ONNX shape inference")
    notes = propagate_unknown_op_shapes(inferred)
    if notes:  # once more, whole-graph: data propagation (Reshape targets...) past the assumed
        # shapes; not strict, since an assumption may be wrong (a custom op that reshapes).
        inferred = infer_shapes(inferred, strict=False)
        check_deadline("ONNX shape inference")
    return _count(inferred, sha256, resolved, notes)


def _count(
    model: onnx.ModelProto, sha: str, input_shapes: dict[str, list[int]], notes: list[str]
) -> GraphWork:
    counter = NodeCounter(model.graph, notes)
    nodes: list[NodeWork] = []
    for idx, node in enumerate(model.graph.node):
        if idx % 4096 == 0:
            check_deadline("counting the model's work")
        name = node.name or f"{node.op_type}_{idx}"
        try:
            nodes.append(counter.node(node, name))
        except InvalidRequest:
            raise
        except (ValueError, TypeError, IndexError, KeyError, OverflowError) as exc:
            # A node whose attributes or inputs do not fit its op (a string group, a scalar
            # weight, an attribute of undefined type): the model's fault, named.
            raise InvalidRequest(
                f"node {name!r} ({node.op_type}) is malformed: {type(exc).__name__}: {exc}"
            ) from None
    tag_fusions(model.graph, nodes)
    check_totals(nodes)
    if counter.unnoted:
        counter.notes.append(f"... and {counter.unnoted} more nodes whose MACs were not counted")
    if counter.unknown_shapes:
        shown = sorted(counter.unknown_shapes)[:5]
        counter.notes.append(
            f"{len(counter.unknown_shapes)} tensors of unknown shape count as 0 bytes "
            f"(e.g. {shown})"
        )
    return GraphWork(sha256=sha, nodes=nodes, input_shapes=input_shapes, notes=counter.notes)

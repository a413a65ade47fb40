"""What each node of an ONNX model does: MACs, vector ops and the tensors it reads and writes.

Shape inference first (``onnx.shape_inference``), then per node a count that is independent of
the hardware. The analytical model (``analytical.py``) turns these counts into cycles for a
profile; keeping them apart lets one analysis serve every profile and every calibration step.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto, shape_inference

from gen5nas.estimator.errors import InvalidRequest, TooLarge
from gen5nas.estimator.profiles import FUSION_RULES

# Op kinds: the cost classes of the analytical model.
COMPUTE_KINDS = ("conv", "pwconv", "dwconv", "gemm")  # MACs on the MAC array
VECTOR_KINDS = ("elementwise", "pool", "resize")  # ops on the vector unit
MOVE_KINDS = ("data",)  # only moves bytes (Concat, Transpose, Slice...)
VIEW_KINDS = ("view",)  # metadata only (Reshape, Flatten...): free
OTHER_KIND = "other"  # unknown to the model: costed by bytes moved, flagged unsupported
KINDS = (*COMPUTE_KINDS, *VECTOR_KINDS, *MOVE_KINDS, *VIEW_KINDS, OTHER_KIND)

# Activations that fold into the producing Conv/Gemm (profiles.FUSION_RULES "activation").
FUSABLE_ACTIVATIONS = {
    "Relu", "Clip", "LeakyRelu", "HardSigmoid", "HardSwish", "Sigmoid", "Tanh",
    "BatchNormalization",
}  # fmt: skip

# Vector ops per output element (a documented approximation; 1 = one ALU op).
ELEMENTWISE_OPS: dict[str, int] = {
    "Add": 1, "Sub": 1, "Mul": 1, "Div": 1, "Relu": 1, "LeakyRelu": 2, "PRelu": 2, "Clip": 2,
    "Sigmoid": 4, "HardSigmoid": 3, "HardSwish": 4, "Tanh": 4, "Erf": 4, "Gelu": 6, "Exp": 4,
    "Log": 4, "Sqrt": 2, "Reciprocal": 1, "Pow": 4, "Neg": 1, "Abs": 1, "Max": 1, "Min": 1,
    "Where": 1, "Cast": 1, "Mish": 6, "Softplus": 4, "Elu": 4, "Selu": 4, "Sum": 1, "Mean": 1,
    "BatchNormalization": 2, "InstanceNormalization": 5, "LayerNormalization": 5,
    "Softmax": 3, "LogSoftmax": 4, "QuantizeLinear": 2, "DequantizeLinear": 2, "Floor": 1,
    "Ceil": 1, "Round": 1, "Equal": 1, "Greater": 1, "Less": 1, "Not": 1, "And": 1, "Or": 1,
    "Swish": 4, "Silu": 4,
}  # fmt: skip
POOL_OPS = {"MaxPool", "AveragePool", "LpPool"}
GLOBAL_POOL_OPS = {
    "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum",
    "ReduceL2", "ReduceProd",
}  # fmt: skip
RESIZE_OPS = {"Resize", "Upsample"}
DATA_OPS = {
    "Concat", "Split", "Slice", "Pad", "Transpose", "Gather", "GatherElements", "Tile", "Expand",
    "DepthToSpace", "SpaceToDepth", "ScatterND", "TopK",
}  # fmt: skip
VIEW_OPS = {
    "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Shape", "Constant", "Dropout",
    "Size", "ConstantOfShape", "Range",
}  # fmt: skip
# Data-carrying element types; int64 shape/index tensors are metadata and move no real bytes.
DATA_TYPES = {
    TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE,
    TensorProto.INT8, TensorProto.UINT8, TensorProto.INT16, TensorProto.UINT16, TensorProto.BOOL,
}  # fmt: skip


@dataclass(frozen=True)
class TensorUse:
    """One tensor a node reads or writes; ``offchip`` when it must live in DRAM whatever its
    size (weights are stored there, graph inputs/outputs come from and go to memory)."""

    name: str
    numel: int
    offchip: bool
    write: bool


@dataclass
class NodeWork:
    name: str
    op_type: str
    kind: str
    macs: int = 0
    vector_ops: int = 0
    tensors: list[TensorUse] = field(default_factory=list)
    fusion: str = ""  # the FUSION_RULES entry that lets it fold into its producer, if any
    outputs: int = 0  # output elements of a conv/gemm (each one a reduction of macs/outputs)

    @property
    def supported(self) -> bool:
        return self.kind != OTHER_KIND

    def elems_read(self) -> int:
        return sum(t.numel for t in self.tensors if not t.write)

    def elems_written(self) -> int:
        return sum(t.numel for t in self.tensors if t.write)


@dataclass
class GraphWork:
    """The hardware-independent work of a model, plus flat arrays for fast costing."""

    sha256: str
    nodes: list[NodeWork]
    input_shapes: dict[str, list[int]]
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.kind_index = np.array([KINDS.index(n.kind) for n in self.nodes], dtype=np.int64)
        self.macs = np.array([n.macs for n in self.nodes], dtype=np.float64)
        self.vector_ops = np.array([n.vector_ops for n in self.nodes], dtype=np.float64)
        self.outputs = np.array([n.outputs for n in self.nodes], dtype=np.float64)
        self.fusion_index = np.array(  # 1 + FUSION_RULES index; 0 = not fusable
            [FUSION_RULES.index(n.fusion) + 1 if n.fusion else 0 for n in self.nodes],
            dtype=np.int64,
        )
        uses = [(i, t) for i, n in enumerate(self.nodes) for t in n.tensors]
        self.use_node = np.array([i for i, _ in uses], dtype=np.int64)
        self.use_numel = np.array([t.numel for _, t in uses], dtype=np.float64)
        self.use_offchip = np.array([t.offchip for _, t in uses], dtype=bool)
        self.use_write = np.array([t.write for _, t in uses], dtype=bool)

    @property
    def total_macs(self) -> int:
        return int(self.macs.sum())

    def unsupported_ops(self) -> list[str]:
        if not hasattr(self, "_unsupported"):
            self._unsupported = sorted({n.op_type for n in self.nodes if not n.supported})
        return list(self._unsupported)

    def fused_mask(self, rules: Sequence[str]) -> np.ndarray:
        """The nodes folded into their producer under a profile's fusion ``rules``."""
        codes = [FUSION_RULES.index(r) + 1 for r in rules if r in FUSION_RULES]
        return np.isin(self.fusion_index, codes)


def model_sha256(onnx_bytes: bytes) -> str:
    return hashlib.sha256(onnx_bytes).hexdigest()


def _dims(type_proto: onnx.TypeProto) -> list[int | str] | None:
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    dims: list[int | str] = []
    for d in type_proto.tensor_type.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or "?")
    return dims


def _set_dims(type_proto: onnx.TypeProto, dims: Sequence[int]) -> None:
    shape = type_proto.tensor_type.shape
    del shape.dim[:]
    for v in dims:
        shape.dim.add().dim_value = int(v)


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
    return model


def analyze(
    onnx_bytes: bytes,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    max_bytes: int | None = None,
) -> GraphWork:
    """Shape-infer ``onnx_bytes`` and count each node's work. ``input_shapes`` fixes symbolic
    input dimensions (refused when one is left symbolic, with the input named)."""
    model = load_model(onnx_bytes, max_bytes)
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
        dims = _dims(inp.type)
        if inp.name in input_shapes:
            given = input_shapes[inp.name]
            if any(v <= 0 for v in given) or (dims is not None and len(given) != len(dims)):
                raise InvalidRequest(
                    f"input_shapes[{inp.name!r}] = {given}: give {len(dims or [])} positive "
                    f"dims for the model's shape {dims}"
                )
            _set_dims(inp.type, given)
            resolved[inp.name] = list(given)
        elif dims is None or any(not isinstance(d, int) for d in dims):
            raise InvalidRequest(
                f"model input {inp.name!r} has a symbolic shape {dims}; give a concrete one in "
                f"the request's input_shapes, e.g. {{name: {inp.name!r}, dims: [1, 3, 224, 224]}}"
            )
        else:
            resolved[inp.name] = [int(d) for d in dims]  # type: ignore[arg-type]
    inferred = _infer(model)
    notes: list[str] = []
    # Each round can reach one more unknown op (one fed, through known ops, by another).
    for _ in range(len(graph.node)):
        assumed = _assume_unknown_op_shapes(inferred.graph)
        if not assumed:
            break
        notes += assumed
        inferred = _infer(inferred)
    return _count(inferred, sha256, resolved, notes)


def _infer(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:  # onnx raises several types; all mean the same to a user
        raise InvalidRequest(f"ONNX shape inference failed: {exc}") from None


def _assume_unknown_op_shapes(graph: onnx.GraphProto) -> list[str]:
    """Give the outputs ONNX inferred nothing for, of ops unknown to the analytical model
    (custom ops, mostly), their first input's type and shape, so that the tensors downstream get shapes
    (and bytes, MACs) instead of counting 0. An assumption: right for elementwise-like custom
    ops (activations, quantisers), wrong for ones that change the shape; each use is noted.
    Outputs with a partial shape (data-dependent dims) are left alone. Changes ``graph``."""
    infos = {vi.name: vi for vi in [*graph.input, *graph.value_info, *graph.output]}
    types = {name: vi.type for name, vi in infos.items()}
    for t in graph.initializer:
        types[t.name] = onnx.helper.make_tensor_type_proto(t.data_type, list(t.dims))
    notes = []
    for idx, node in enumerate(graph.node):
        if _kind(node.op_type, node, {}, lambda _: None) != OTHER_KIND or not node.input:
            continue
        src = types.get(node.input[0])
        if src is None or _dims(src) is None:
            continue
        filled = []
        for out in node.output:
            if not out or (out in infos and _dims(infos[out].type) is not None):
                continue
            vi = infos.get(out) or graph.value_info.add(name=out)
            vi.type.CopyFrom(src)
            types[out] = vi.type  # an unknown op fed directly by this one is reached now
            filled.append(out)
        if filled:
            name = node.name or f"{node.op_type}_{idx}"
            notes.append(
                f"{name}: ONNX shape inference gave {node.op_type}'s outputs {filled} no "
                f"shape; assumed its first input's shape {_dims(src)}"
            )
    return notes


def _count(
    model: onnx.ModelProto, sha: str, input_shapes: dict[str, list[int]], notes: list[str]
) -> GraphWork:
    graph = model.graph
    shapes: dict[str, list[int | str] | None] = {}
    dtypes: dict[str, int] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        shapes[vi.name] = _dims(vi.type)
        dtypes[vi.name] = vi.type.tensor_type.elem_type
    constant: set[str] = set()
    for t in graph.initializer:
        shapes[t.name] = [int(d) for d in t.dims]
        dtypes[t.name] = t.data_type
        constant.add(t.name)
    graph_io = {i.name for i in graph.input if i.name not in constant} | {
        o.name for o in graph.output
    }
    notes = list(notes)
    unknown_shapes: set[str] = set()

    def numel(name: str) -> int:
        dims = shapes.get(name)
        if dims is None or any(not isinstance(d, int) for d in dims):
            unknown_shapes.add(name)
            return 0
        return math.prod(dims)  # type: ignore[arg-type]

    def shape(name: str) -> list[int] | None:
        dims = shapes.get(name)
        if dims is None or any(not isinstance(d, int) for d in dims):
            return None
        return dims  # type: ignore[return-value]

    nodes: list[NodeWork] = []
    for idx, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}_{idx}"
        op = node.op_type
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if op == "Constant":
            constant.update(node.output)
            for out in node.output:
                value = attrs.get("value")
                if isinstance(value, onnx.TensorProto):
                    shapes[out] = [int(d) for d in value.dims]
                    dtypes[out] = value.data_type
        work = NodeWork(name=name, op_type=op, kind=_kind(op, node, attrs, shape))
        if work.kind != "view":
            for tn in node.input:
                if tn and dtypes.get(tn, TensorProto.FLOAT) in DATA_TYPES:
                    offchip = tn in constant or tn in graph_io
                    work.tensors.append(TensorUse(tn, numel(tn), offchip=offchip, write=False))
            for tn in node.output:
                if tn and dtypes.get(tn, TensorProto.FLOAT) in DATA_TYPES:
                    work.tensors.append(TensorUse(tn, numel(tn), tn in graph_io, write=True))
        out0 = node.output[0] if node.output else ""
        out_numel = numel(out0) if out0 else 0
        if work.kind in COMPUTE_KINDS:
            work.outputs = out_numel
        if work.kind in ("conv", "pwconv", "dwconv"):
            w = shape(node.input[1]) if len(node.input) > 1 else None
            if w is None:
                notes.append(f"{name}: weight shape unknown, MACs not counted")
            elif op == "ConvTranspose":
                in_numel = numel(node.input[0])
                work.macs = in_numel * w[1] * math.prod(w[2:])
            else:
                work.macs = out_numel * w[1] * math.prod(w[2:])
        elif work.kind == "gemm":
            a = shape(node.input[0]) if node.input else None
            if a is None:
                notes.append(f"{name}: input shape unknown, MACs not counted")
            else:
                k = a[0] if (op == "Gemm" and attrs.get("transA", 0)) else a[-1]
                work.macs = out_numel * k
        elif work.kind == "elementwise":
            work.vector_ops = out_numel * ELEMENTWISE_OPS.get(op, 1)
        elif work.kind == "pool":
            if op in GLOBAL_POOL_OPS:
                work.vector_ops = numel(node.input[0])
            else:
                work.vector_ops = out_numel * math.prod(attrs.get("kernel_shape", [1]))
        elif work.kind == "resize":
            mode = attrs.get("mode", b"nearest")
            mode = mode.decode() if isinstance(mode, bytes) else str(mode)
            work.vector_ops = out_numel * (1 if mode == "nearest" else 4)
        nodes.append(work)
    _tag_fusions(graph, nodes)
    if unknown_shapes:
        shown = sorted(unknown_shapes)[:5]
        notes.append(
            f"{len(unknown_shapes)} tensors of unknown shape count as 0 bytes (e.g. {shown})"
        )
    return GraphWork(sha256=sha, nodes=nodes, input_shapes=input_shapes, notes=notes)


def _tag_fusions(graph: onnx.GraphProto, nodes: list[NodeWork]) -> None:
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


def _kind(op: str, node: onnx.NodeProto, attrs: dict, shape) -> str:  # type: ignore[no-untyped-def]
    if op in ("Conv", "ConvTranspose"):
        group = int(attrs.get("group", 1))
        w = shape(node.input[1]) if len(node.input) > 1 else None
        # Depthwise: one input channel per group (MobileNet's 3x3/5x5 convs).
        if op == "Conv" and group > 1 and w is not None and w[1] == 1:
            return "dwconv"
        # Pointwise: a 1x1 dense conv is a plain GEMM (no im2col, no spatial reuse).
        if op == "Conv" and group == 1 and w is not None and all(d == 1 for d in w[2:]):
            return "pwconv"
        return "conv"
    if op in ("Gemm", "MatMul"):
        return "gemm"
    if op in ELEMENTWISE_OPS:
        return "elementwise"
    if op in POOL_OPS or op in GLOBAL_POOL_OPS:
        return "pool"
    if op in RESIZE_OPS:
        return "resize"
    if op in DATA_OPS:
        return "data"
    if op in VIEW_OPS:
        return "view"
    return OTHER_KIND

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

from gen5nas.estimator.errors import InvalidRequest, TooLarge, check_deadline
from gen5nas.estimator.profiles import FUSION_RULES

# Bounds on what one request may ask for, checked before the work they size is done.
MAX_NODES = 200_000  # top-level nodes; large real models have a few 10k
MAX_DIM = 2**31 - 1  # one dimension of an input shape given in a request
MAX_ELEMENTS = 2**40  # one tensor (4 TiB of fp32): beyond any model a backend could run
MAX_TOTAL = 2**62  # a model's total MACs, vector ops or bytes: they travel as int64
MAX_NOTES = 20  # notes of one kind in an answer; the rest are counted

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
        dims = _dims(inp.type)
        if inp.name in input_shapes:
            given = input_shapes[inp.name]
            bad = not given or any(not 0 < v <= MAX_DIM for v in given)
            if bad or (dims is not None and len(given) != len(dims)):
                raise InvalidRequest(
                    f"input_shapes[{inp.name!r}] = {given}: give {len(dims or [])} dims "
                    f"in 1..{MAX_DIM} for the model's shape {dims}"
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
    check_deadline("reading the model's inputs")
    inferred = _infer(model)
    check_deadline("ONNX shape inference")
    notes = _propagate_unknown_op_shapes(inferred)
    if notes:  # once more, whole-graph: data propagation (Reshape targets...) past the assumed
        # shapes; not strict, since an assumption may be wrong (a custom op that reshapes).
        inferred = _infer(inferred, strict=False)
        check_deadline("ONNX shape inference")
    return _count(inferred, sha256, resolved, notes)


def _infer(model: onnx.ModelProto, strict: bool = True) -> onnx.ModelProto:
    """Strict: a node whose inputs do not fit (a MatMul of mismatched dims) is refused rather
    than counted with made-up shapes; ops without a schema (custom) pass."""
    try:
        return shape_inference.infer_shapes(model, strict_mode=strict, data_prop=True)
    except Exception as exc:  # onnx raises several types; all mean the same to a user
        if not strict:
            return model
        raise InvalidRequest(f"ONNX shape inference failed: {exc}") from None


def _propagate_unknown_op_shapes(model: onnx.ModelProto) -> list[str]:
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
        missing = [o for o in node.output if o and (o not in types or _dims(types[o]) is None)]
        if not missing or not node.input:
            continue
        if _kind(node.op_type, node, {}, lambda _: None) != OTHER_KIND:
            if any(i in changed for i in node.input):
                inferred = _infer_node(node, types, opsets, model.ir_version)
                for out, tp in inferred.items():
                    if out in missing and _dims(tp) is not None:
                        _set_type(graph, infos, types, out, tp)
                        changed.add(out)
            continue
        src = types.get(node.input[0])
        if src is None or _dims(src) is None or any(a.g.node or a.graphs for a in node.attribute):
            continue  # control flow (Loop, If, Scan): its outputs are not shaped like input 0
        for out in missing:
            assumed = onnx.TypeProto()
            assumed.CopyFrom(src)
            declared = types[out].tensor_type.elem_type if out in types else 0
            if declared:  # a declared element type stays; only the shape is assumed
                assumed.tensor_type.elem_type = declared
            _set_type(graph, infos, types, out, assumed)
            changed.add(out)
        name = node.name or f"{node.op_type}_{idx}"
        assumed_ops += 1
        if assumed_ops <= MAX_NOTES:
            notes.append(
                f"{name}: ONNX shape inference gave {node.op_type}'s outputs {missing} no "
                f"shape; assumed its first input's shape {_dims(src)}"
            )
    if assumed_ops > MAX_NOTES:  # the answer's notes stay short, whatever the graph
        notes.append(
            f"... and {assumed_ops - MAX_NOTES} more unknown ops assumed their first input's "
            f"shape ({assumed_ops} in all)"
        )
    return notes


def _set_type(graph, infos, types, name: str, tp: onnx.TypeProto) -> None:  # type: ignore[no-untyped-def]
    vi = infos.get(name)
    if vi is None:
        vi = infos[name] = graph.value_info.add(name=name)
    vi.type.CopyFrom(tp)
    types[name] = vi.type


def _infer_node(
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


def _count(
    model: onnx.ModelProto, sha: str, input_shapes: dict[str, list[int]], notes: list[str]
) -> GraphWork:
    counter = _Counter(model.graph, notes)
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
    _tag_fusions(model.graph, nodes)
    _check_totals(nodes)
    if counter.unnoted:
        counter.notes.append(f"... and {counter.unnoted} more nodes whose MACs were not counted")
    if counter.unknown_shapes:
        shown = sorted(counter.unknown_shapes)[:5]
        counter.notes.append(
            f"{len(counter.unknown_shapes)} tensors of unknown shape count as 0 bytes "
            f"(e.g. {shown})"
        )
    return GraphWork(sha256=sha, nodes=nodes, input_shapes=input_shapes, notes=counter.notes)


def _check_totals(nodes: list[NodeWork]) -> None:
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


class _Counter:
    """The shapes and element types known of a graph's tensors, and the work of each node."""

    def __init__(self, graph: onnx.GraphProto, notes: list[str]) -> None:
        self.shapes: dict[str, list[int | str] | None] = {}
        self.dtypes: dict[str, int] = {}
        for vi in [*graph.input, *graph.value_info, *graph.output]:
            self.shapes[vi.name] = _dims(vi.type)
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
        work = NodeWork(name=name, op_type=op, kind=_kind(op, node, attrs, self.shape))
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
            _check_conv(node, name, attrs, self.shape(node.input[0]), w)
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


def _check_conv(
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

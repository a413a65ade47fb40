"""The cost classes of the analytical model (op kinds) and which ONNX ops fall in each."""

from __future__ import annotations

import onnx
from onnx import TensorProto

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


def op_kind(op: str, node: onnx.NodeProto, attrs: dict, shape) -> str:  # type: ignore[no-untyped-def]
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

"""The ONNX graph of an arch's static subnet, built directly with ``onnx.helper`` (no torch).

Tracing a randomly initialised static subnet through ``torch.onnx.export`` costs 0.25-1 s of
CPU per new arch, on the cores a local search shares with its accuracy evaluation. The
analytical model reads only the graph's structure and tensor shapes, so this module writes that
graph directly, in a few milliseconds. Its layers come from the same plan as the supernet's
(:func:`gen5nas.spec.plan.network_plan`): only the ONNX spelling of each layer is written here.

The graph is node for node what the TorchScript exporter emits for
``extract_subnet(Supernet(space, num_classes, activation), arch)`` in eval mode (opset 17, BN
folded into each Conv's bias, dropout gone), with the exporter's node and tensor names so
per-layer results read the same: per conv ``Conv`` then the activation (relu6: two scalar
``Constant`` nodes + ``Clip``; relu: ``Relu``; hswish: ``HardSwish``; silu: ``Sigmoid`` +
``Mul``), the residual ``Add`` after the project conv, then ``GlobalAveragePool``, ``Flatten``
and ``Gemm`` (transB). tests/test_estimator_arch_graph.py checks the analytical estimate of
both graphs is the same for max, min and random archs of the shipped spaces, per activation.

:func:`backbone_model` writes the stem and stages alone (the ``backbone`` cost scope: what a
detection head reads), :func:`arch_graph_for` picks the graph of a cost scope. The one graph
not written here is the ``detector`` scope's (:func:`detector_model`): a task's whole
detector (neck, head, their reshapes), traced from a randomly initialised static detector by
torch's exporter at a static shape (:func:`gen5nas.supernet.onnx_export.arch_onnx_bytes`,
0.3-0.5 s per arch on one core), with the raw head outputs and NMS outside the graph; torch is
imported for that scope only.

One difference, on purpose: the exporter de-duplicates initializers with equal values
(``Identity`` nodes), which with freshly initialised weights (all-zero BN-folded biases, zeroed
project-BN gammas) turns some weights into activations in the cost model. Trained weights are
never equal, so this graph has no such nodes: it is the exported graph of a trained subnet.

Weights: ``weights="zeros"`` fills every initializer with zeros (the model passes
``onnx.checker`` and runs in onnxruntime with the right output shape, as fast as with real
weights: fp32 kernels do not look at values); ``weights="none"`` leaves the data out (shapes
only) for the analysis, which never reads values, saving the serialisation of megabytes of
zeros. Real weights come only from a checkpoint, through ``gen5nas.export``.
"""

from __future__ import annotations

import math
from typing import Literal, assert_never

import onnx
from onnx import TensorProto, helper

from gen5nas.spec import Arch, SearchSpace
from gen5nas.spec.plan import (
    ACTIVATIONS,
    IMAGE_CHANNELS,
    STEM_KERNEL,
    STEM_STRIDE,
    Activation,
    BlockPlan,
    NetworkPlan,
    check_activation,
    network_plan,
)

__all__ = [
    "ACTIVATIONS",
    "GRAPH_SCOPES",
    "arch_graph_for",
    "arch_model",
    "arch_onnx",
    "detector_model",
]

OPSET = 17
IR_VERSION = 8  # what torch's exporter writes for opset 17; onnxruntime loads it everywhere
INPUT_NAME = "input"  # = gen5nas.supernet.onnx_export.INPUT_NAME / OUTPUT_NAME
OUTPUT_NAME = "output"
Weights = Literal["zeros", "none"]
GRAPH_SCOPES = ("network", "backbone", "detector")
"""The cost scopes (``gen5nas.spec.search.CostScope``) :func:`arch_graph_for` builds a graph
for; which of them a task's subnets can be costed in is the task's (``Task.cost_scopes``)."""
DEFAULT_TASK = "classification"  # what an arch request without a task is for


class _GraphBuilder:
    def __init__(self, weights: Weights) -> None:
        self.weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []

    def initializer(self, name: str, dims: list[int]) -> str:
        if self.weights == "zeros":
            data = bytes(4 * math.prod(dims))
            tensor = helper.make_tensor(name, TensorProto.FLOAT, dims, data, raw=True)
        else:  # shapes only: not a loadable model, but all that shape inference reads
            tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=dims)
        self.initializers.append(tensor)
        return name

    def node(self, scope: str, op: str, inputs: list[str], suffix: str = "", **attrs) -> str:  # type: ignore[no-untyped-def]
        name = f"{scope}/{op}{suffix}"
        out = f"{name}_output_0"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def scalar(self, scope: str, value: float, suffix: str) -> str:
        tensor = helper.make_tensor("", TensorProto.FLOAT, [], [value])
        return self.node(scope, "Constant", [], suffix, value=tensor)

    def conv(  # type: ignore[no-untyped-def]
        self, scope: str, x: str, c_in: int, c_out: int, kernel: int, stride: int, groups: int
    ) -> str:
        """``scope`` is the module path, e.g. ``/stem/stem.0``; weight + folded-BN bias."""
        key = _state_dict_prefix(scope)
        w = self.initializer(f"{key}.weight", [c_out, c_in // groups, kernel, kernel])
        b = self.initializer(f"{key}.bias", [c_out])
        pad = kernel // 2
        return self.node(
            scope,
            "Conv",
            [x, w, b],
            dilations=[1, 1],
            group=groups,
            kernel_shape=[kernel, kernel],
            pads=[pad, pad, pad, pad],
            strides=[stride, stride],
        )

    def activation(self, scope: str, x: str, activation: str) -> str:
        """The nodes torch's exporter writes for each :class:`Activation`."""
        act = Activation(activation)
        if act is Activation.relu6:
            lo = self.scalar(scope, 0.0, "")
            hi = self.scalar(scope, 6.0, "_1")
            return self.node(scope, "Clip", [x, lo, hi])
        if act is Activation.relu:
            return self.node(scope, "Relu", [x])
        if act is Activation.hswish:
            return self.node(scope, "HardSwish", [x])
        if act is Activation.silu:
            gate = self.node(scope, "Sigmoid", [x])  # torch exports x * sigmoid(x)
            return self.node(scope, "Mul", [x, gate])
        assert_never(act)

    def conv_bn_act(  # type: ignore[no-untyped-def]
        self,
        scope: str,
        x: str,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int,
        groups: int,
        activation: str | None,
    ) -> str:
        """A Sequential(conv, bn[, act]) at ``scope`` (e.g. ``/stem/stem``): BN folds away."""
        out = self.conv(f"{scope}.0", x, c_in, c_out, kernel, stride, groups)
        return self.activation(f"{scope}.2", out, activation) if activation else out

    def mbconv(self, block: BlockPlan, x: str, activation: str) -> str:
        """A StaticMBConv at ``/stage{i}/stage{i}.{j}``: Sequential(layers) then the skip."""
        scope = f"/stage{block.stage}/stage{block.stage}.{block.index}"

        def part(k: int) -> str:
            return f"{scope}/layers/layers.{k}/layers.{k}"

        k, h = 0, x
        if block.expand:
            c_in, mid = block.in_channels, block.mid_channels
            h = self.conv_bn_act(part(k), h, c_in, mid, 1, 1, 1, activation)
            k += 1
        mid, kernel = block.mid_channels, block.kernel_size
        h = self.conv_bn_act(part(k), h, mid, mid, kernel, block.stride, mid, activation)
        h = self.conv_bn_act(part(k + 1), h, mid, block.out_channels, 1, 1, 1, None)
        return self.node(scope, "Add", [h, x]) if block.residual else h


def _state_dict_prefix(scope: str) -> str:
    """``/stage0/stage0.0/layers/layers.1/layers.1.0`` -> ``stage0.0.layers.1.0`` (the module's
    state_dict name: torch's scope lists each module by its name within its parent)."""
    parts = scope.strip("/").split("/")
    kept = [
        p for p, nxt in zip(parts, [*parts[1:], ""], strict=True) if not nxt.startswith(p + ".")
    ]
    return ".".join(kept)


def _check_request(activation: str, num_classes: int, batch_size: int) -> None:
    check_activation(activation)
    if num_classes < 1 or batch_size < 1:
        raise ValueError(f"num_classes ({num_classes}) and batch_size ({batch_size}) must be >= 1")


def _backbone(g: _GraphBuilder, plan: NetworkPlan, activation: str) -> str:
    """The stem and every stage's blocks; returns the last block's output."""
    x = g.conv_bn_act(
        "/stem/stem",
        INPUT_NAME,
        IMAGE_CHANNELS,
        plan.stem_channels,
        STEM_KERNEL,
        STEM_STRIDE,
        1,
        activation,
    )
    for block in plan.blocks:
        x = g.mbconv(block, x, activation)
    return x


def _model(
    g: _GraphBuilder, plan: NetworkPlan, batch_size: int, output_shape: list[int]
) -> onnx.ModelProto:
    h_in, w_in = plan.resolution
    graph = helper.make_graph(
        g.nodes,
        "main_graph",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [batch_size, 3, h_in, w_in])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, output_shape)],
        initializer=g.initializers,
    )
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="gen5nas.estimator.arch_graph",
    )


def arch_model(
    space: SearchSpace,
    arch: Arch,
    num_classes: int = 1000,
    *,
    activation: str = "relu6",
    batch_size: int = 1,
    weights: Weights = "zeros",
) -> onnx.ModelProto:
    """The ONNX model of ``arch``'s static subnet (input ``input`` [batch, 3, H, W] at
    ``arch.resolution``, output ``output`` [batch, num_classes]).

    Raises :class:`gen5nas.errors.ArchError` for an arch outside ``space``, ``ValueError`` for
    an unknown activation or a non-positive class count or batch size."""
    _check_request(activation, num_classes, batch_size)
    plan = network_plan(space, arch)
    g = _GraphBuilder(weights)
    x = _backbone(g, plan, activation)
    width = plan.features_channels
    last = plan.last_channels
    x = g.conv_bn_act("/last/last", x, width, last, 1, 1, 1, activation)
    x = g.node("/pool", "GlobalAveragePool", [x])
    x = g.node("/flatten", "Flatten", [x], axis=1)
    wc = g.initializer("classifier.weight", [num_classes, last])
    bc = g.initializer("classifier.bias", [num_classes])
    g.nodes.append(
        helper.make_node(
            "Gemm",
            [x, wc, bc],
            [OUTPUT_NAME],
            name="/classifier/Gemm",
            alpha=1.0,
            beta=1.0,
            transB=1,
        )
    )
    return _model(g, plan, batch_size, [batch_size, num_classes])


def _conv_size(size: int, kernel: int, stride: int) -> int:
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def backbone_model(
    space: SearchSpace,
    arch: Arch,
    *,
    activation: str = "relu6",
    batch_size: int = 1,
    weights: Weights = "zeros",
) -> onnx.ModelProto:
    """The ONNX model of ``arch``'s backbone: the stem and the stages of its static subnet (what
    a task's head reads, ``forward_features``), without the last conv, the pooling and the
    classifier. Input as :func:`arch_model`'s; output ``output`` [batch, C, H/32, W/32] (the
    last stage's), node for node the exporter's graph of those modules."""
    _check_request(activation, 1, batch_size)
    plan = network_plan(space, arch)
    g = _GraphBuilder(weights)
    _backbone(g, plan, activation)
    # The last block's output is the graph's (as the exporter names it): no Identity node.
    g.nodes[-1].output[0] = OUTPUT_NAME
    h, w = (_conv_size(side, STEM_KERNEL, STEM_STRIDE) for side in plan.resolution)
    for block in plan.blocks:
        h = _conv_size(h, block.kernel_size, block.stride)
        w = _conv_size(w, block.kernel_size, block.stride)
    return _model(g, plan, batch_size, [batch_size, plan.features_channels, h, w])


def detector_model(
    space: SearchSpace,
    arch: Arch,
    num_classes: int,
    *,
    task: str,
    activation: str = "relu6",
    batch_size: int = 1,
) -> onnx.ModelProto:
    """The ONNX model of ``task``'s whole static detector for ``arch`` (randomly initialised:
    see the module docstring): input as :func:`arch_model`'s, outputs the raw head tensors
    ``cls_logits`` [batch, A, num_classes], ``box_regression`` [batch, A, 4] and
    ``centerness`` [batch, A, 1], A the locations at ``arch.resolution``.

    Raises ``ValueError`` when ``task`` has no detector (its ``cost_scopes`` lack
    ``detector``) or is not registered."""
    from gen5nas.errors import SpecError
    from gen5nas.supernet.onnx_export import arch_onnx_bytes
    from gen5nas.tasks.base import get_task

    _check_request(activation, num_classes, batch_size)
    try:
        scopes = get_task(task).cost_scopes
    except SpecError as exc:
        raise ValueError(str(exc)) from None
    if "detector" not in scopes:
        raise ValueError(f"task {task!r} has no detector graph; its cost scopes are {list(scopes)}")
    data = arch_onnx_bytes(
        space, arch, num_classes, batch_size, OPSET, task=task, activation=activation
    )
    return onnx.load_from_string(data)


def arch_graph_for(
    scope: str,
    space: SearchSpace,
    arch: Arch,
    num_classes: int = 1000,
    *,
    activation: str = "relu6",
    batch_size: int = 1,
    weights: Weights = "zeros",
    task: str = DEFAULT_TASK,
) -> onnx.ModelProto:
    """The graph the estimator costs for ``arch`` in cost scope ``scope`` (one of
    :data:`GRAPH_SCOPES`): ``network`` the whole static subnet (:func:`arch_model`),
    ``backbone`` its stem and stages (:func:`backbone_model`), both the same for every task;
    ``detector`` ``task``'s whole static detector (:func:`detector_model`; it always has
    weights, random ones). Another name is a ``ValueError`` naming the scopes there are."""
    if scope == "network":
        return arch_model(
            space, arch, num_classes, activation=activation, batch_size=batch_size, weights=weights
        )
    if scope == "backbone":
        return backbone_model(
            space, arch, activation=activation, batch_size=batch_size, weights=weights
        )
    if scope == "detector":
        return detector_model(
            space, arch, num_classes, task=task, activation=activation, batch_size=batch_size
        )
    raise ValueError(f"no {scope!r} graph of an arch; cost scopes: {list(GRAPH_SCOPES)}")


def arch_onnx(
    space: SearchSpace,
    arch: Arch,
    num_classes: int = 1000,
    *,
    activation: str = "relu6",
    batch_size: int = 1,
    scope: str = "network",
    task: str = DEFAULT_TASK,
) -> bytes:
    """The serialised ONNX of ``arch``'s graph in ``scope`` for ``task`` (see
    :func:`arch_graph_for`), with weights: what the measured backend runs, and what a client
    can send (without torch, but for the ``detector`` scope)."""
    model = arch_graph_for(
        scope, space, arch, num_classes, activation=activation, batch_size=batch_size,
        weights="zeros", task=task,
    )  # fmt: skip
    return model.SerializeToString()

"""One plan of the network (``gen5nas.spec.plan``) and its three consumers.

The supernet (its full-size layers, and the widths a forward actually runs), the extracted static
subnet and the torch-free ONNX arch graph each build their layers from the plan; each is read
back here from what it really contains (tensor shapes seen by forward hooks, module attributes,
ONNX initializer dims and nodes) and compared with the plan, block by block, for the max, min and
random archs of both shipped spaces. A consumer that works out a width, stride or skip on its own
and gets it differently fails here; the plan itself is pinned by hand-written MobileNetV2 facts.
"""

from __future__ import annotations

import dataclasses
import random

import onnx
import pytest
import torch
from torch import Tensor, nn

from gen5nas.errors import ArchError
from gen5nas.estimator.arch_graph import arch_model
from gen5nas.spec import Arch, SearchSpace, load_space
from gen5nas.spec.plan import BlockPlan, NetworkPlan, make_divisible, network_plan, supernet_plan
from gen5nas.spec.space import parse_model
from gen5nas.supernet import Supernet, extract_subnet

torch.set_num_threads(2)

SPACES = ("mobilenetv2_tiny", "mobilenetv2_sample1")
Row = tuple[int, int, int, int, int, int, int, bool, bool]


def _archs(space: SearchSpace, name: str) -> list[Arch]:
    rng = random.Random(f"plan-{name}")
    return [space.max(), space.min(), *(space.sample(rng) for _ in range(4))]


def _rows(plan: NetworkPlan) -> list[Row]:
    return [dataclasses.astuple(block) for block in plan.blocks]  # type: ignore[misc]


def _summary(plan: NetworkPlan) -> tuple:
    return plan.resolution, plan.stem_channels, plan.features_channels, plan.last_channels


@pytest.fixture(scope="module", params=SPACES)
def built(request: pytest.FixtureRequest) -> tuple[str, SearchSpace, Supernet]:
    torch.manual_seed(0)
    space = load_space(request.param)
    net = Supernet(space, num_classes=5).eval()
    with torch.no_grad():  # no zero gammas: a residual block's output then differs from its branch
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return request.param, space, net


# ---- the plan itself ---------------------------------------------------------------------------
def test_default_space_plan_is_mobilenetv2() -> None:
    space = load_space("mobilenetv2_sample1")
    plan = network_plan(space, space.max())
    assert _summary(plan) == ((224, 224), 32, 320, 1280)
    assert plan.depths == (1, 2, 3, 4, 3, 3, 1)
    s0, s1 = plan.stages[0], plan.stages[1]
    # Stage 0's table is {1: 1}: no expand conv, 32 -> 16 channels, so no skip.
    assert s0 == (BlockPlan(0, 0, 32, 32, 16, 3, 1, expand=False, residual=False),)
    # Stage 1 at depth 2 runs ratio 6: 16 -> 96 -> 24 with stride 2, then 24 -> 144 -> 24 + skip.
    assert s1 == (
        BlockPlan(1, 0, 16, 96, 24, 5, 2, expand=True, residual=False),
        BlockPlan(1, 1, 24, 144, 24, 5, 1, expand=True, residual=True),
    )
    assert [b.stride for b in plan.blocks if b.index == 0] == [1, 2, 2, 2, 1, 2, 1]
    # Stage 4 (stride 1, 64 -> 96): its first block has no skip, the others have.
    assert [b.residual for b in plan.stages[4]] == [False, True, True]

    small = network_plan(space, space.min())
    assert _summary(small) == ((160, 160), 16, 256, 1024)
    # The stem at 16 channels feeds stage 0's 16: the same block is now residual.
    assert small.stages[0][0] == BlockPlan(0, 0, 16, 16, 16, 3, 1, expand=False, residual=True)
    assert small.stages[2][0].mid_channels == make_divisible(16 * 4)  # ratio 4 at depth 2


def test_make_divisible() -> None:
    assert make_divisible(32 * 6) == 192
    assert make_divisible(8 * 3) == 24
    assert make_divisible(3) == 8
    assert make_divisible(9) == 16  # rounding down to 8 would lose more than 10%
    values = [make_divisible(v / 4) for v in range(1, 2000)]
    assert values == sorted(values)  # monotonic: a smaller subnet never gets more channels


@pytest.mark.parametrize("name", SPACES)
def test_supernet_plan_is_the_max_arch_plan_for_the_shipped_spaces(name: str) -> None:
    space = load_space(name)  # their tables grow with the depth
    assert supernet_plan(space) == network_plan(space, space.max())


def _space(expand_ratio: list[dict[int, float]]) -> SearchSpace:
    return parse_model(
        SearchSpace,
        {
            "arch_setting": {
                "num_blocks": [[1, 1, 1], [1, 2, 1]],
                "kernel_size": [[3, 3, 2], [3, 5, 2]],
                "num_out_channels": [[8, 8, 8], [8, 16, 8]],
                "expand_ratio": expand_ratio,
                "stride": [1, 2],
                "first_num_out_channels": [8, 16, 8],
                "last_num_out_channels": [32, 32, 8],
            },
            "input_resizer_cfg": [[16, 16]],
        },
    )


def test_supernet_plan_sizes_the_expand_conv_for_the_largest_ratio_of_the_table() -> None:
    space = _space([{1: 1}, {1: 6, 2: 3}])  # the largest ratio is at the smallest depth
    full = supernet_plan(space)
    assert full.stages[1][0].mid_channels == make_divisible(8 * 6)
    assert network_plan(space, space.max()).stages[1][0].mid_channels == make_divisible(8 * 3)
    net = Supernet(space, num_classes=3).eval()
    arch = space.max().model_copy(update={"stages": [space.max().stages[0], space.min().stages[1]]})
    assert arch.stages[1].expand_ratio == 6
    net.set_active(arch)
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 3)
    assert extract_subnet(net, arch).stage(1)[0].layers[0][0].out_channels == make_divisible(48)


def test_a_ratio_of_one_keeps_the_expand_conv_when_the_table_has_a_larger_one() -> None:
    space = _space([{1: 1}, {1: 1, 2: 4}])
    plan = network_plan(space, space.min())  # stage 1 at depth 1: ratio 1
    block = plan.stages[1][0]
    assert (block.expand, block.in_channels, block.mid_channels) == (True, 8, 8)
    assert not network_plan(space, space.min()).stages[0][0].expand  # table {1: 1}


def test_an_arch_outside_the_space_is_refused_naming_the_field() -> None:
    space = load_space("mobilenetv2_tiny")
    bad = space.max().model_copy(update={"first_num_out_channels": 12})
    with pytest.raises(ArchError) as err:
        network_plan(space, bad)
    assert err.value.dimension == "first_num_out_channels"


# ---- consumer 1: the supernet ------------------------------------------------------------------
def test_supernet_full_size_layers_are_the_supernet_plan(built) -> None:  # type: ignore[no-untyped-def]
    _, space, net = built
    full = supernet_plan(space)
    assert net.stem.conv.conv.weight.shape == (full.stem_channels, 3, 3, 3)
    assert net.last.conv.conv.weight.shape == (full.last_channels, full.features_channels, 1, 1)
    got = []
    for i, stage in enumerate(full.stages):
        assert len(net.blocks(i)) == len(stage)
        for j, block in enumerate(net.blocks(i)):
            dw = block.depthwise.conv.conv
            in_channels = dw.in_channels
            if block.expand is not None:
                expand = block.expand.conv.conv.weight
                assert expand.shape[0] == dw.in_channels and expand.shape[2:] == (1, 1)
                in_channels = expand.shape[1]
            assert dw.groups == dw.in_channels == dw.out_channels
            project = block.project.conv.conv.weight
            assert project.shape[1:] == (dw.out_channels, 1, 1)
            got.append(
                (
                    i,
                    j,
                    in_channels,
                    dw.out_channels,
                    project.shape[0],
                    dw.kernel_size[0],
                    dw.stride[0],
                    block.expand is not None,
                )
            )
    assert got == [row[:8] for row in _rows(full)]


def _run_supernet(net: Supernet, arch: Arch) -> tuple[tuple, list[Row]]:
    """What a forward of ``arch`` runs: every width from the tensors themselves."""
    seen: dict[tuple[int, int], dict[str, Tensor]] = {}
    stem_io: list[tuple[Tensor, Tensor]] = []
    last_io: list[tuple[Tensor, Tensor]] = []
    hooks = [
        net.stem.register_forward_hook(lambda m, args, out: stem_io.append((args[0], out))),
        net.last.register_forward_hook(lambda m, args, out: last_io.append((args[0], out))),
    ]

    def record(key: tuple[int, int], part: str):  # type: ignore[no-untyped-def]
        def hook(module: nn.Module, args: tuple, out: Tensor) -> None:
            seen.setdefault(key, {})[part] = out
            if part == "block":
                seen[key]["x"] = args[0]

        return hook

    for i in range(len(net.stages)):
        for j, block in enumerate(net.blocks(i)):
            parts = {"block": block, "dw": block.depthwise, "project": block.project}
            if block.expand is not None:
                parts["expand"] = block.expand
            hooks += [m.register_forward_hook(record((i, j), p)) for p, m in parts.items()]
    net.set_active(arch)
    with torch.no_grad():
        net(torch.randn(2, 3, 40, 36))  # resized to the arch's resolution by forward
    for h in hooks:
        h.remove()
    rows = []
    for (i, j), t in sorted(seen.items()):
        block = net.blocks(i)[j]
        x, y, p = t["x"], t["block"], t["project"]
        residual = not torch.equal(y, p)
        if residual:
            torch.testing.assert_close(y, p + x)
        if "expand" in t:
            assert t["expand"].shape[1] == t["dw"].shape[1]
        stride = block.depthwise.conv.stride
        assert t["dw"].shape[-1] == (x.shape[-1] - 1) // stride + 1
        rows.append(
            (
                i,
                j,
                x.shape[1],
                t["dw"].shape[1],
                y.shape[1],
                block.depthwise.conv.active_kernel,
                stride,
                "expand" in t,
                residual,
            )
        )
    ((image, stem),) = stem_io
    ((features, last),) = last_io
    summary = (tuple(image.shape[-2:]), stem.shape[1], features.shape[1], last.shape[1])
    return summary, rows


def test_supernet_runs_the_widths_of_the_plan(built) -> None:  # type: ignore[no-untyped-def]
    name, space, net = built
    for arch in _archs(space, name):
        plan = network_plan(space, arch)
        summary, rows = _run_supernet(net, arch)
        assert summary == _summary(plan), arch.summary()
        assert rows == _rows(plan), arch.summary()
        assert net.active_plan == plan


# ---- consumer 2: the static subnet -------------------------------------------------------------
def _static_rows(subnet: nn.Module, num_stages: int) -> list[Row]:
    rows = []
    for i in range(num_stages):
        for j, block in enumerate(subnet.stage(i)):  # type: ignore[operator]
            convs = [seq[0] for seq in block.layers]
            assert all(isinstance(c, nn.Conv2d) for c in convs) and len(convs) in (2, 3)
            dw, project = convs[-2], convs[-1]
            assert dw.groups == dw.in_channels == dw.out_channels
            assert project.in_channels == dw.out_channels and project.kernel_size == (1, 1)
            rows.append(
                (
                    i,
                    j,
                    convs[0].in_channels,
                    dw.out_channels,
                    project.out_channels,
                    dw.kernel_size[0],
                    dw.stride[0],
                    len(convs) == 3,
                    block.residual,
                )
            )
    return rows


def test_static_subnet_has_the_layers_of_the_plan(built) -> None:  # type: ignore[no-untyped-def]
    name, space, net = built
    for arch in _archs(space, name):
        plan = network_plan(space, arch)
        subnet = extract_subnet(net, arch)
        stem, last = subnet.stem[0], subnet.last[0]
        assert (stem.in_channels, stem.kernel_size, stem.stride) == (3, (3, 3), (2, 2))
        summary = (arch.resolution, stem.out_channels, last.in_channels, last.out_channels)
        assert summary == _summary(plan), arch.summary()
        assert _static_rows(subnet, subnet.num_stages) == _rows(plan), arch.summary()


# ---- consumer 3: the ONNX arch graph -----------------------------------------------------------
def _graph_rows(model: onnx.ModelProto) -> tuple[tuple, list[Row]]:
    dims = {t.name: list(t.dims) for t in model.graph.initializer}
    convs: dict[tuple[int, int], list[onnx.NodeProto]] = {}
    adds: set[tuple[int, int]] = set()
    for node in model.graph.node:
        scope = node.name.split("/")
        if not scope[1].startswith("stage"):
            continue
        key = (int(scope[1][5:]), int(scope[2].split(".")[1]))
        if node.op_type == "Conv":
            convs.setdefault(key, []).append(node)
        elif node.op_type == "Add":
            adds.add(key)
    attr = {
        n.name: {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        for n in model.graph.node
    }
    rows = []
    for key, nodes in sorted(convs.items()):
        w = [dims[n.input[1]] for n in nodes]
        dw = nodes[-2]
        assert attr[dw.name]["group"] == w[-2][0] and w[-2][1] == 1
        rows.append(
            (
                *key,
                w[0][1] if len(nodes) == 3 else w[-2][0],
                w[-2][0],
                w[-1][0],
                w[-2][2],
                attr[dw.name]["strides"][0],
                len(nodes) == 3,
                key in adds,
            )
        )
    by_name = {n.name: n for n in model.graph.node}
    stem = dims[by_name["/stem/stem.0/Conv"].input[1]]
    last = dims[by_name["/last/last.0/Conv"].input[1]]
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    return (tuple(shape[2:]), stem[0], last[1], last[0]), rows


def test_onnx_arch_graph_has_the_layers_of_the_plan() -> None:
    for name in SPACES:
        space = load_space(name)
        for arch in _archs(space, name):
            plan = network_plan(space, arch)
            summary, rows = _graph_rows(arch_model(space, arch, 5, weights="none"))
            assert summary == _summary(plan), arch.summary()
            assert rows == _rows(plan), arch.summary()

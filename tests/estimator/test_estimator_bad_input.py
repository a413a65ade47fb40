"""Bad input against a real estimator server on loopback: every case is refused with the right
status class and a message naming what is wrong, and the next good request is answered within
its normal deadline. Models that cannot finish in onnxruntime (a Loop of 10^12 iterations) are
cut off at the request's deadline and the measured backend serves the next request."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest
from estimator_helpers import chain_of_unknown_ops, endless_loop
from grpc_health.v1 import health_pb2, health_pb2_grpc
from onnx import TensorProto, helper
from realparts._proc import wait_until

from gen5nas.estimator import onnx_graph
from gen5nas.estimator._proto import estimator_pb2 as pb
from gen5nas.estimator._proto import estimator_pb2_grpc as pb_grpc
from gen5nas.estimator.profiles import ProfileRegistry, save_profile
from gen5nas.estimator.server import SERVICE_NAME, start_server
from gen5nas.estimator.synthetic import convnet
from gen5nas.spec import load_space

GOOD = convnet(resolution=16, channels=(8, 8))
GOOD_DEADLINE_S = 60  # what a normal request gets (generous: the machine is shared)
MEASURE_MEMORY_MB = 1024
SPACE = "mobilenetv2_sample1"
ARCH_YAML = load_space(SPACE).min().to_yaml()
INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
TOO_LARGE, DEADLINE = grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED
REFUSAL_S: dict[str, float] = {}  # how long each refusal took (printed at the end)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    # A measured profile with few runs, so the good measured requests are quick.
    cpu = ProfileRegistry().get("cpu-ort")
    quick = dataclasses.replace(cpu, name="cpu-quick", measured={**cpu.measured, "repeats": 2})
    profiles = tmp_path_factory.mktemp("profiles")
    save_profile(quick, profiles / "quick.yaml", header="test: a quick measured profile")
    handle = start_server(
        0, profiles_dir=profiles, max_model_mb=2, measure_memory_mb=MEASURE_MEMORY_MB
    )
    yield handle
    handle.stop(grace=0)
    # The figures, worst first, for the record (pytest -s shows them).
    for label, seconds in sorted(REFUSAL_S.items(), key=lambda kv: -kv[1])[:12]:
        print(f"{seconds * 1e3:9.1f} ms  {label}")


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.ports[0]}") as ch:
        yield ch


def _raw_estimate(channel: grpc.Channel, data: bytes, timeout: float) -> bytes:
    call = channel.unary_unary(f"/{SERVICE_NAME}/Estimate")  # bytes in, bytes out
    return call(data, timeout=timeout)  # type: ignore[no-any-return]


def _good_requests_answered(channel: grpc.Channel) -> None:
    stub = pb_grpc.EstimatorStub(channel)
    resp = stub.Estimate(pb.EstimateRequest(onnx=GOOD), timeout=GOOD_DEADLINE_S)
    assert resp.latency_ms > 0 and resp.backend == "analytical"
    measured = pb.EstimateRequest(onnx=GOOD, profile="cpu-quick", omit_layers=True)
    resp = stub.Estimate(measured, timeout=GOOD_DEADLINE_S)
    assert resp.latency_ms > 0 and resp.backend == "onnxruntime"


# ---- models -----------------------------------------------------------------------------------
def _model(
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    inits: list[onnx.TensorProto] = (),  # type: ignore[assignment]
    opset: int = 17,
    ir: int = 8,
    outputs: list[str] = ("y",),  # type: ignore[assignment]
    domains: tuple[str, ...] = (),
) -> bytes:
    graph = helper.make_graph(
        nodes,
        "bad",
        inputs,
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        list(inits),
    )
    opsets = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, 1) for d in domains)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = ir
    return model.SerializeToString()


def _x(shape: list[int] | None = None, name: str = "x") -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape or [1, 4, 8, 8])


def _w(dims: list[int], name: str = "w") -> onnx.TensorProto:
    return helper.make_tensor(name, TensorProto.FLOAT, dims, np.zeros(dims, np.float32).ravel())


def _relu(**attrs: object) -> bytes:
    return _model([helper.make_node("Relu", ["x"], ["y"], **attrs)], [_x()])


def _undefined_attribute() -> bytes:
    node = helper.make_node("Relu", ["x"], ["y"])
    attr = node.attribute.add()
    attr.name, attr.type = "alpha", onnx.AttributeProto.UNDEFINED
    return _model([node], [_x()])


def _conv(x: list[int], w: list[int], **attrs: object) -> bytes:
    return _model([helper.make_node("Conv", ["x", "w"], ["y"], **attrs)], [_x(x)], [_w(w)])


def _const_of_shape(dims: list[int]) -> bytes:
    shape = helper.make_tensor("s", TensorProto.INT64, [len(dims)], dims)
    return _model([helper.make_node("ConstantOfShape", ["s"], ["y"])], [], [shape])


def _runtime_sized(elements: float) -> bytes:
    """y = Expand(1, shape) with shape = |x| * k + k computed at run time: no analysis can see
    its size; onnxruntime allocates it (or fails to)."""
    k = helper.make_tensor("k", TensorProto.FLOAT, [], [elements**0.5])
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    nodes = [
        helper.make_node("Abs", ["x"], ["a"]),
        helper.make_node("Mul", ["a", "k"], ["b"]),
        helper.make_node("Add", ["b", "k"], ["c"]),
        helper.make_node("Cast", ["c"], ["s"], to=TensorProto.INT64),
        helper.make_node("Expand", ["one", "s"], ["y"]),
    ]
    return _model(nodes, [_x([2])], [k, one])


def _symbolic() -> bytes:
    return _model([helper.make_node("Relu", ["x"], ["y"])], [_x(["batch", 4])])  # type: ignore[list-item]


def _req(**fields: object) -> pb.EstimateRequest:
    return pb.EstimateRequest(**fields)  # type: ignore[arg-type]


def _arch(**fields: object) -> pb.EstimateRequest:
    ref = {"space": SPACE, "arch_yaml": ARCH_YAML, **fields}
    return pb.EstimateRequest(arch=pb.ArchRef(**ref), omit_layers=True)  # type: ignore[arg-type]


def _with_shapes(*shapes: tuple[str, list[int]]) -> pb.EstimateRequest:
    req = pb.EstimateRequest(onnx=GOOD)
    for name, dims in shapes:
        req.input_shapes.add(name=name, dims=dims)
    return req


def _bytes_with_bad_utf8(field: Callable[[pb.EstimateRequest], None], marker: str) -> bytes:
    req = pb.EstimateRequest(onnx=GOOD)
    field(req)
    data = req.SerializeToString()
    return data.replace(marker.encode(), b"\xff\xfe" + marker.encode()[2:])


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)
DEEP_YAML = "[" * 200 + "]" * 200

# (id, request: a message or raw bytes, code, words the message must contain)
CASES: list[tuple[str, object, grpc.StatusCode, tuple[str, ...]]] = [
    # -- the request itself
    ("garbage bytes", b"\x08\x07garbage, not protobuf \xff\xfe", INVALID, ("malformed", "EstimateRequest")),
    ("truncated field", pb.EstimateRequest(profile="edge-npu").SerializeToString()[:-3], INVALID, ("truncated",)),
    ("bad utf-8 profile", _bytes_with_bad_utf8(lambda r: setattr(r, "profile", "xxedge"), "xxedge"), INVALID, ("profile", "UTF-8")),
    ("bad utf-8 arch.space", _bytes_with_bad_utf8(lambda r: r.arch.CopyFrom(pb.ArchRef(space="xxmob")), "xxmob"), INVALID, ("arch.space", "UTF-8")),
    ("empty", _req(), INVALID, ("empty",)),
    ("unknown metric enum", _req(onnx=GOOD, metrics=[7]), INVALID, ("metrics[0] = 7", "METRIC_LATENCY")),
    ("unspecified metric", _req(onnx=GOOD, metrics=[1, 0]), INVALID, ("metrics[1] = 0",)),
    ("unknown profile", _req(onnx=GOOD, profile="gen9-npu"), NOT_FOUND, ("gen9-npu", "rcar-gen5-npu")),
    ("1 MB profile name", _req(onnx=GOOD, profile="p" * 2**20), NOT_FOUND, ("unknown hardware profile", "message cut")),
    ("unknown backend", _req(onnx=GOOD, profile="edge-npu", backend="tpu"), INVALID, ("'tpu'", "analytical")),
    ("hw_config inf", _req(onnx=GOOD, hw_config={"clock_ghz": float("inf")}), INVALID, ("hw_config.clock_ghz",)),
    ("hw_config unknown key", _req(onnx=GOOD, hw_config={"tops": 1}), INVALID, ("'tops'", "allowed")),
    ("hw_config extreme", _req(onnx=GOOD, hw_config={"bytes_per_element": 1e300}), INVALID, ("out of range", "bytes_per_element")),
    ("input_shapes negative", _with_shapes(("input", [1, 3, -16, 16])), INVALID, ("input_shapes['input']", "1..")),
    ("input_shapes huge dim", _with_shapes(("input", [1, 3, 2**40, 16])), INVALID, ("input_shapes['input']", "2147483647")),
    ("input_shapes unknown input", _with_shapes(("nope", [1])), INVALID, ("['nope']", "its inputs")),
    ("input_shapes twice", _with_shapes(("input", [1, 3, 16, 16]), ("input", [1, 3, 16, 16])), INVALID, ("input_shapes[1]", "second time")),
    ("symbolic input", _req(onnx=_symbolic()), INVALID, ("'x'", "input_shapes")),
    # -- arch requests
    ("unknown space", _arch(space="../../etc/passwd"), NOT_FOUND, ("unknown search space", SPACE)),
    ("negative num_classes", _arch(num_classes=-5), INVALID, ("arch.num_classes = -5",)),
    ("huge num_classes", _arch(num_classes=2**31 - 1), INVALID, ("arch.num_classes", "100000")),
    ("unknown activation", _arch(activation="gelu"), INVALID, ("arch.activation", "relu6")),
    ("arch yaml too large", _arch(arch_yaml="# x\n" * 20000), TOO_LARGE, ("arch.arch_yaml", "limit")),
    ("arch yaml alias bomb", _arch(arch_yaml=ALIAS_BOMB), INVALID, ("arch.arch_yaml", "aliases")),
    ("arch yaml deep nesting", _arch(arch_yaml=DEEP_YAML), INVALID, ("arch.arch_yaml", "deeper")),
    ("arch yaml not yaml", _arch(arch_yaml="stages: [1, 2"), INVALID, ("arch.arch_yaml", "YAML")),
    ("arch yaml a list", _arch(arch_yaml="- 1\n- 2\n"), INVALID, ("arch.arch_yaml", "arch document")),
    ("arch off the space", _arch(arch_yaml=ARCH_YAML.replace("kernel_size: 3", "kernel_size: 4", 1)), INVALID, ("kernel_size",)),
    # -- models
    ("opset beyond onnx", _req(onnx=_model([helper.make_node("Relu", ["x"], ["y"])], [_x()], opset=99)), INVALID, ("opset_import", "99")),
    ("ir_version beyond onnx", _req(onnx=_model([helper.make_node("Relu", ["x"], ["y"])], [_x()], ir=99)), INVALID, ("ir_version 99",)),
    ("huge declared input", _req(onnx=_model([helper.make_node("Relu", ["x"], ["y"])], [_x([10**9, 10**9, 10**6])])), INVALID, ("'x'", "out of range")),
    ("huge ConstantOfShape", _req(onnx=_const_of_shape([10**6, 10**6, 10**6])), INVALID, ("'y'", "out of range")),
    ("attribute of undefined type", _req(onnx=_undefined_attribute()), INVALID, ("Relu", "alpha")),
    ("unknown attribute", _req(onnx=_relu(alpha=2.0)), INVALID, ("Relu", "alpha")),
    ("string group", _req(onnx=_conv([1, 4, 8, 8], [4, 4, 3, 3], group="two")), INVALID, ("Conv", "group")),
    ("conflicting pads", _req(onnx=_conv([1, 4, 8, 8], [4, 4, 3, 3], auto_pad="SAME_UPPER", pads=[1] * 4)), INVALID, ("conflicting", "auto_pad", "pads")),
    ("conv channels mismatch", _req(onnx=_conv([1, 6, 8, 8], [4, 4, 3, 3])), INVALID, ("Conv", "6 channels")),
    ("matmul mismatch", _req(onnx=_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [_x([2, 3])], [_w([5, 7])])), INVALID, ("MatMul", "shape inference")),
    ("unknown default-domain op", _req(onnx=_model([helper.make_node("NoSuchOp", ["x"], ["y"])], [_x()])), INVALID, ("NoSuchOp",)),
    ("cycle", _req(onnx=_model([helper.make_node("Add", ["x", "z"], ["y"]), helper.make_node("Relu", ["y"], ["z"])], [_x()])), INVALID, ("'z'", "cycle")),
    ("two writers", _req(onnx=_model([helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Relu", ["x"], ["y"], name="again")], [_x()])), INVALID, ("'again'", "one writer")),
    ("model too large", _req(onnx=convnet(resolution=32, channels=(128, 256, 512))), TOO_LARGE, ("--max-model-mb",)),
    ("custom op, measured", _req(onnx=chain_of_unknown_ops(3), profile="cpu-quick"), INVALID, ("onnxruntime cannot load", "Fancy")),
    ("runtime-sized tensor over the worker's memory", _req(onnx=_runtime_sized(1e10), profile="cpu-quick"), TOO_LARGE, ("onnxruntime ran out", "--measure-memory-mb")),
    ("tensor over the worker's memory", _req(onnx=_model([helper.make_node("Relu", ["x"], ["y"])], [_x([1, 2**30])]), profile="cpu-quick"), TOO_LARGE, ("'x'", "--measure-memory-mb")),
]  # fmt: skip


@pytest.mark.parametrize(("label", "request_", "code", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_by_name(channel, label, request_, code, words) -> None:
    data = request_ if isinstance(request_, bytes) else request_.SerializeToString()
    t0 = time.perf_counter()
    with pytest.raises(grpc.RpcError) as err:
        _raw_estimate(channel, data, timeout=GOOD_DEADLINE_S)
    REFUSAL_S[label] = time.perf_counter() - t0
    details = err.value.details() or ""
    assert err.value.code() == code, f"{label}: {err.value.code()} {details}"
    for word in words:
        assert word in details, f"{label}: {word!r} not in {details!r}"
    assert len(details) <= 2000
    _good_requests_answered(channel)


def test_malformed_list_hardware_request(channel) -> None:
    call = channel.unary_unary(f"/{SERVICE_NAME}/ListHardware")
    with pytest.raises(grpc.RpcError) as err:
        call(b"\x0a\x05ab", timeout=GOOD_DEADLINE_S)
    assert err.value.code() == INVALID and "ListHardwareRequest" in (err.value.details() or "")
    _good_requests_answered(channel)


def test_too_many_nodes(channel, monkeypatch) -> None:
    monkeypatch.setattr(onnx_graph, "MAX_NODES", 100)  # the server runs in this process
    with pytest.raises(grpc.RpcError) as err:
        _raw_estimate(channel, _req(onnx=chain_of_unknown_ops(101)).SerializeToString(), 60)
    assert err.value.code() == TOO_LARGE and "101 nodes" in (err.value.details() or "")
    monkeypatch.undo()
    _good_requests_answered(channel)


def _health(channel: grpc.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=30).status  # type: ignore[no-any-return]


def test_a_loop_that_never_ends_is_cut_at_the_deadline(server, channel) -> None:
    _good_requests_answered(channel)  # the worker is up and warm
    measurer = server.servicer.engine._measurer
    restarts = measurer.restarts
    health_changes: list[tuple[str, bool]] = []
    server.servicer.engine.on_backend_health(lambda *change: health_changes.append(change))
    stub = pb_grpc.EstimatorStub(channel)
    stall = pb.EstimateRequest(onnx=endless_loop(10**12), profile="cpu-quick", omit_layers=True)
    t0 = time.perf_counter()
    with pytest.raises(grpc.RpcError) as err:
        stub.Estimate(stall, timeout=2)
    REFUSAL_S["Loop of 10^12, deadline 2 s"] = time.perf_counter() - t0
    assert err.value.code() == DEADLINE

    # The server killed the stuck worker (not waiting 10^12 iterations) and starts a new one.
    def replaced() -> bool:
        return measurer.restarts == restarts + 1 and server.servicer.in_flight == 0

    wait_until("the worker to be replaced and the request done", replaced, 60, [], 0.05)
    # Health said so: NOT_SERVING while no worker could take a request, SERVING once one can.
    wait_until("a fresh worker", lambda: len(health_changes) == 2, 120, [], 0.05)
    assert health_changes == [("onnxruntime", False), ("onnxruntime", True)]
    t0 = time.perf_counter()
    _good_requests_answered(channel)
    REFUSAL_S["next good requests after the stall"] = time.perf_counter() - t0
    assert _health(channel, "onnxruntime") == health_pb2.HealthCheckResponse.SERVING
    # The analytical backend never depended on it: a Loop is costed by the bytes it moves.
    resp = stub.Estimate(pb.EstimateRequest(onnx=endless_loop(10**12)), timeout=GOOD_DEADLINE_S)
    assert resp.unsupported_ops == ["Loop"]


def test_analysis_stops_at_the_client_deadline(server, channel) -> None:
    stats = server.servicer.stats
    before = stats["estimate"], stats["error:DEADLINE_EXCEEDED"] + stats["error:CANCELLED"]
    big = pb.EstimateRequest(onnx=chain_of_unknown_ops(20_000)).SerializeToString()
    t0 = time.perf_counter()
    with pytest.raises(grpc.RpcError) as err:
        _raw_estimate(channel, big, timeout=0.3)
    REFUSAL_S["20k-node analysis, deadline 0.3 s"] = time.perf_counter() - t0
    assert err.value.code() == DEADLINE

    def stopped() -> bool:
        gave_up = stats["error:DEADLINE_EXCEEDED"] + stats["error:CANCELLED"]
        return server.servicer.in_flight == 0 and gave_up > before[1]

    wait_until("the server to give up on the request", stopped, 60, [], 0.05)
    assert stats["estimate"] == before[0]  # stopped, not finished
    _good_requests_answered(channel)


def test_a_backend_that_cannot_start_is_not_serving(tmp_path: Path) -> None:
    # 64 MiB of address space: the onnxruntime worker cannot even import onnxruntime.
    cpu = ProfileRegistry().get("cpu-ort")
    save_profile(dataclasses.replace(cpu, name="cpu-tiny"), tmp_path / "tiny.yaml")
    handle = start_server(0, profiles_dir=tmp_path, measure_memory_mb=64)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{handle.ports[0]}") as ch:
            stub = pb_grpc.EstimatorStub(ch)
            with pytest.raises(grpc.RpcError) as err:
                stub.Estimate(pb.EstimateRequest(onnx=GOOD, profile="cpu-tiny"), timeout=120)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "onnxruntime backend cannot serve" in (err.value.details() or "")
            serving, not_serving = (
                health_pb2.HealthCheckResponse.SERVING,
                health_pb2.HealthCheckResponse.NOT_SERVING,
            )
            assert _health(ch, "onnxruntime") == not_serving
            assert _health(ch, "") == serving and _health(ch, "analytical") == serving
            assert stub.Estimate(pb.EstimateRequest(onnx=GOOD), timeout=60).latency_ms > 0
    finally:
        handle.stop(grace=0)


def test_a_request_without_deadline_stops_at_the_server_limit() -> None:
    handle = start_server(0, max_request_s=2)
    good = pb.EstimateRequest(onnx=GOOD, profile="cpu-ort", omit_layers=True)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{handle.ports[0]}") as ch:
            stub = pb_grpc.EstimatorStub(ch)
            # The worker up first (in-process, as the 2 s would also bound its start).
            engine = handle.servicer.engine
            assert engine.estimate(GOOD, profile="cpu-ort", with_layers=False).latency_ms
            measurer = engine._measurer
            endless = pb.EstimateRequest(onnx=endless_loop(), profile="cpu-ort", omit_layers=True)
            t0 = time.perf_counter()
            with pytest.raises(grpc.RpcError) as err:
                stub.Estimate(endless)  # no deadline: the server's 2 s apply
            REFUSAL_S["Loop of 10^12, no deadline, --max-request-s 2"] = time.perf_counter() - t0
            assert err.value.code() == DEADLINE
            assert "did not finish by the request's deadline" in (err.value.details() or "")
            assert measurer.restarts == 1
            wait_until("a fresh worker", lambda: measurer._ready, 120, [], 0.05)
            resp = stub.Estimate(good, timeout=60)  # it serves the next request
            assert resp.backend == "onnxruntime" and resp.latency_ms > 0
    finally:
        handle.stop(grace=0)


@pytest.mark.parametrize("target", ["model", "request"])
def test_random_corruptions_are_never_a_server_error(server, channel, target) -> None:
    """300 seeded corruptions (1-4 bytes each) of a good model, or of a whole request: each is
    answered, or refused as the client's fault, never INTERNAL or UNKNOWN (which a string that
    is not UTF-8 in a node's name used to give)."""
    rng = np.random.default_rng(13)
    request = pb.EstimateRequest(onnx=GOOD, profile="edge-npu", omit_layers=True)
    original = GOOD if target == "model" else request.SerializeToString()
    seen: dict[str, int] = {}
    for _ in range(300):
        data = bytearray(original)
        for pos in rng.integers(0, len(data), size=int(rng.integers(1, 5))):
            data[pos] = int(rng.integers(0, 256))
        if target == "model":
            request.onnx = bytes(data)
            payload = request.SerializeToString()
        else:
            payload = bytes(data)
        try:
            _raw_estimate(channel, payload, timeout=GOOD_DEADLINE_S)
            code = "OK"
        except grpc.RpcError as exc:
            code = exc.code().name
            assert exc.code() in (INVALID, NOT_FOUND, TOO_LARGE), exc.details()
        seen[code] = seen.get(code, 0) + 1
    assert seen.get("INVALID_ARGUMENT", 0) > 0  # the corruptions did reach the checks
    _good_requests_answered(channel)

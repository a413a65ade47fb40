"""The gRPC server on loopback: every port answers, health, reflection, bad input, shutdown."""

from __future__ import annotations

import dataclasses
import signal
import threading
from pathlib import Path
from typing import Any

import grpc
import onnx
import pytest
from estimator_helpers import ServerProcess, endless_loop, ort_workers, running
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from realparts._proc import wait_until

from gen5nas.estimator._proto import estimator_pb2 as pb
from gen5nas.estimator._proto import estimator_pb2_grpc as pb_grpc
from gen5nas.estimator.client import EstimatorClient
from gen5nas.estimator.engine import EstimatorEngine
from gen5nas.estimator.profiles import ProfileRegistry, save_profile
from gen5nas.estimator.server import SERVICE_NAME, start_server
from gen5nas.estimator.synthetic import convnet

MODEL = convnet(resolution=32, channels=(8, 16))


@pytest.fixture(scope="module")
def server():
    # Models above 64 KiB are refused, so the size check can be tested with a small model.
    handle = start_server([0, 0, 0], max_model_mb=64 / 1024)
    yield handle
    handle.stop(grace=1)


def _stub(port: int) -> tuple[grpc.Channel, pb_grpc.EstimatorStub]:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    return channel, pb_grpc.EstimatorStub(channel)


def test_every_port_answers(server) -> None:
    assert len(set(server.ports)) == 3
    latencies = set()
    for port in server.ports:
        channel, stub = _stub(port)
        with channel:
            resp = stub.Estimate(pb.EstimateRequest(onnx=MODEL, profile="edge-npu"), timeout=30)
            hw = stub.ListHardware(pb.ListHardwareRequest(), timeout=30)
        latencies.add(resp.latency_ms)
        assert resp.backend == "analytical" and resp.profile == "edge-npu"
        assert resp.HasField("energy_mj") and resp.energy_mj > 0
        assert resp.estimator_version.startswith("gen5nas-estimator/")
        assert any(x.op_type == "Conv" and x.macs > 0 for x in resp.layers)
        assert {p.name for p in hw.profiles} >= {"rcar-gen5-npu", "edge-npu", "cpu-ort"}
        rcar = next(p for p in hw.profiles if p.name == "rcar-gen5-npu")
        assert rcar.parameters["mac_units"] > 0 and "TOPS" in rcar.sources["mac_units"]
    assert len(latencies) == 1  # one process, one model: the same answer on every port


def test_metrics_and_omit_layers(server) -> None:
    channel, stub = _stub(server.ports[0])
    with channel:
        req = pb.EstimateRequest(onnx=MODEL, metrics=[pb.METRIC_LATENCY], omit_layers=True)
        resp = stub.Estimate(req, timeout=30)
    assert resp.HasField("latency_ms") and not resp.HasField("energy_mj")
    assert len(resp.layers) == 0 and resp.profile == "rcar-gen5-npu"


def test_health_and_reflection(server) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.ports[1]}")
    with channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", SERVICE_NAME, "analytical", "onnxruntime"):
            resp = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING, name
        with pytest.raises(grpc.RpcError) as err:
            health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
        assert SERVICE_NAME in services and "grpc.health.v1.Health" in services


def _symbolic_model() -> bytes:
    model = onnx.load_from_string(convnet(resolution=16, channels=(8, 8)))
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    return model.SerializeToString()


BAD_REQUESTS = [
    ("malformed", pb.EstimateRequest(onnx=b"\x08\x07garbage, not protobuf \xff\xfe"),
     grpc.StatusCode.INVALID_ARGUMENT, "ONNX"),
    ("empty", pb.EstimateRequest(), grpc.StatusCode.INVALID_ARGUMENT, "empty"),
    ("unknown profile", pb.EstimateRequest(onnx=MODEL, profile="gen9-npu"),
     grpc.StatusCode.NOT_FOUND, "rcar-gen5-npu"),
    ("too large", pb.EstimateRequest(onnx=convnet(resolution=32, channels=(32, 64, 96))),
     grpc.StatusCode.RESOURCE_EXHAUSTED, "--max-model-mb"),
    ("symbolic shape", pb.EstimateRequest(onnx=_symbolic_model()),
     grpc.StatusCode.INVALID_ARGUMENT, "input_shapes"),
    ("zero hw value", pb.EstimateRequest(onnx=MODEL, hw_config={"clock_ghz": 0}),
     grpc.StatusCode.INVALID_ARGUMENT, "hw_config.clock_ghz"),
    ("negative hw value", pb.EstimateRequest(onnx=MODEL, hw_config={"sram_kib": -4}),
     grpc.StatusCode.INVALID_ARGUMENT, "positive"),
    ("unknown hw key", pb.EstimateRequest(onnx=MODEL, hw_config={"tops": 10}),
     grpc.StatusCode.INVALID_ARGUMENT, "allowed"),
    ("unknown backend", pb.EstimateRequest(onnx=MODEL, profile="edge-npu", backend="onnxruntime"),
     grpc.StatusCode.INVALID_ARGUMENT, "analytical"),
    ("unknown space", pb.EstimateRequest(arch=pb.ArchRef(space="../../etc", arch_yaml="a: 1")),
     grpc.StatusCode.NOT_FOUND, "mobilenetv2_sample1"),
]  # fmt: skip


def test_bad_input_gets_an_actionable_error_and_the_server_keeps_serving(server) -> None:
    assert len(MODEL) < 64 * 1024 < len(BAD_REQUESTS[3][1].onnx)
    channel, stub = _stub(server.ports[2])
    with channel:
        for label, request, code, text in BAD_REQUESTS:
            with pytest.raises(grpc.RpcError) as err:
                stub.Estimate(request, timeout=30)
            assert err.value.code() == code, f"{label}: {err.value.details()}"
            assert text in err.value.details(), f"{label}: {err.value.details()}"
        # With the shape given, the symbolic model is fine; and a good request still works.
        req = pb.EstimateRequest(onnx=_symbolic_model())
        req.input_shapes.add(name="input", dims=[1, 3, 16, 16])
        assert stub.Estimate(req, timeout=30).latency_ms > 0
        assert stub.Estimate(pb.EstimateRequest(onnx=MODEL), timeout=30).latency_ms > 0


def test_measured_backend_through_grpc(server) -> None:
    channel, stub = _stub(server.ports[0])
    with channel:
        resp = stub.Estimate(pb.EstimateRequest(onnx=MODEL, profile="cpu-ort"), timeout=60)
    assert resp.backend == "onnxruntime" and resp.latency_ms > 0 and resp.energy_mj > 0
    assert any("median" in n for n in resp.notes)
    assert resp.layers and all(x.latency_ms >= 0 for x in resp.layers)


class _GatedEngine(EstimatorEngine):
    """Holds every request until the test opens the gate: one is surely in flight while the
    server stops."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def estimate(self, *args: Any, **kwargs: Any) -> Any:
        assert self.gate.wait(120)
        return super().estimate(*args, **kwargs)


def test_graceful_shutdown_drains_in_flight_requests() -> None:
    engine = _GatedEngine()
    handle = start_server(0, engine=engine)
    channel, stub = _stub(handle.ports[0])
    health = health_pb2_grpc.HealthStub(channel)
    result: dict[str, object] = {}

    def request() -> None:
        result["resp"] = stub.Estimate(pb.EstimateRequest(onnx=MODEL), timeout=120)

    worker = threading.Thread(target=request)
    worker.start()
    wait_until("the request to arrive", lambda: handle.servicer.in_flight == 1, 60, [], 0.01)
    stopper = threading.Thread(target=handle.stop, kwargs={"grace": 60, "drain_delay": 0.5})
    stopper.start()

    def health_status() -> object:
        try:
            return health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
        except grpc.RpcError as exc:
            return exc.code()

    # First NOT_SERVING while still accepting (probes notice), then no new calls at all ...
    wait_until(
        "draining", lambda: health_status() != health_pb2.HealthCheckResponse.SERVING, 60, [], 0.01
    )
    assert health_status() in (
        health_pb2.HealthCheckResponse.NOT_SERVING,
        grpc.StatusCode.UNAVAILABLE,
    )
    wait_until(
        "the server to close", lambda: health_status() == grpc.StatusCode.UNAVAILABLE, 60, [], 0.01
    )
    # ... while the request that was in flight is still served in full.
    assert worker.is_alive() and stopper.is_alive()
    engine.gate.set()
    worker.join(120)
    stopper.join(120)
    channel.close()
    assert result["resp"].latency_ms > 0  # type: ignore[attr-defined]


def test_cli_server_multi_port_and_sigterm() -> None:
    with ServerProcess(2) as srv:
        assert len(srv.ports) == 2
        for port in srv.ports:
            channel, stub = _stub(port)
            with channel:
                assert stub.Estimate(pb.EstimateRequest(onnx=MODEL), timeout=30).latency_ms > 0
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(timeout=30) == 0


def test_sigterm_stops_the_server_with_a_measurement_that_never_ends() -> None:
    """A measurement that would run for days is in flight: SIGTERM still ends the server
    (NOT_SERVING, ``--grace 2`` of draining, then the onnxruntime worker is killed)."""
    with ServerProcess(1) as srv:
        channel, stub = _stub(srv.ports[0])
        result: dict[str, object] = {}

        def request() -> None:
            endless = pb.EstimateRequest(onnx=endless_loop(), profile="cpu-ort", omit_layers=True)
            try:
                stub.Estimate(endless, timeout=600)
            except grpc.RpcError as exc:
                result["code"] = exc.code()

        worker = threading.Thread(target=request)
        worker.start()
        # The onnxruntime worker is spawned for this request: then the request is in flight.
        wait_until("the onnxruntime worker", lambda: ort_workers(srv.proc.pid), 120, [], 0.1)
        workers = ort_workers(srv.proc.pid)
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(timeout=120) == 0
        worker.join(60)
        channel.close()
    assert not worker.is_alive()
    assert result["code"] in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE), result
    assert not any(running(pid) for pid in workers)  # no orphan left computing


def _slow_profile_dir(tmp_path: Path) -> Path:
    """A copy of cpu-ort that times a million runs: at ~10 us a run (MODEL) no deadline of a
    second or less lets it finish (10000 runs could end within 0.5 s on this machine)."""
    cpu = ProfileRegistry().get("cpu-ort")
    slow = dataclasses.replace(
        cpu, name="cpu-ort-slow", measured={**cpu.measured, "repeats": 10**6}
    )
    save_profile(slow, tmp_path / "slow.yaml", header="test: a measurement that cannot finish")
    return tmp_path


def test_deadline_is_respected_and_the_server_keeps_serving(tmp_path) -> None:
    handle = start_server(0, profiles_dir=_slow_profile_dir(tmp_path))
    channel, stub = _stub(handle.ports[0])
    with channel:
        # Warm up (onnxruntime's import), so the deadline meets the timed runs themselves.
        assert stub.Estimate(pb.EstimateRequest(onnx=MODEL, profile="cpu-ort"), timeout=60)
        slow = pb.EstimateRequest(onnx=MODEL, profile="cpu-ort-slow", omit_layers=True)
        with pytest.raises(grpc.RpcError) as err:
            stub.Estimate(slow, timeout=0.5)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # The server stops measuring at the deadline (not a million runs later) ...
        wait_until(
            "the server to give up",
            lambda: handle.servicer.stats["error:DEADLINE_EXCEEDED"] == 1,
            60,
            [],
            0.01,
        )
        assert handle.servicer.in_flight == 0
        # ... and serves the next request, a measured one too (the measurer is free again).
        resp = stub.Estimate(pb.EstimateRequest(onnx=MODEL, profile="cpu-ort"), timeout=60)
    handle.stop(grace=0)
    assert resp.backend == "onnxruntime" and resp.latency_ms > 0
    assert handle.servicer.stats["estimate"] == 2


def test_bounded_concurrency_refuses_and_the_client_goes_elsewhere() -> None:
    engine = _GatedEngine()
    busy = start_server(0, engine=engine, max_concurrent_rpcs=1)
    other = start_server(0)
    channel, stub = _stub(busy.ports[0])
    result: dict[str, object] = {}

    def request() -> None:
        result["resp"] = stub.Estimate(pb.EstimateRequest(onnx=MODEL), timeout=120)

    worker = threading.Thread(target=request)
    worker.start()
    try:
        wait_until(
            "the first request to arrive", lambda: busy.servicer.in_flight == 1, 60, [], 0.01
        )
        # The one slot is taken: a second call is refused at once, not queued.
        with pytest.raises(grpc.RpcError) as err:
            stub.Estimate(pb.EstimateRequest(onnx=MODEL), timeout=30)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # A client of both asks the busy one first (first in turn), then the other.
        servers = [
            {"host": "127.0.0.1", "ports": busy.ports},
            {"host": "127.0.0.1", "ports": other.ports},
        ]
        with EstimatorClient(servers, profile="edge-npu") as client:
            est = client.estimate(MODEL)
            assert client.stats["rpcs"] == 2 and client.stats["retries"] == 1
        assert est.endpoint == f"127.0.0.1:{other.ports[0]}" and est.latency_ms
        assert other.servicer.stats["estimate"] == 1 and busy.servicer.stats["estimate"] == 0
    finally:
        engine.gate.set()
        worker.join(120)
        channel.close()
        busy.stop(grace=0)
        other.stop(grace=0)
    assert result["resp"].latency_ms > 0  # type: ignore[attr-defined]


def test_cli_server_serves_profiles_from_a_directory(tmp_path) -> None:
    edge = ProfileRegistry().get("edge-npu")
    mine = dataclasses.replace(edge, name="team-npu", params={**edge.params, "clock_ghz": 3.0})
    path = save_profile(mine, tmp_path / "team.yaml")
    with ServerProcess(1, "--profiles", str(tmp_path)) as srv:
        channel, stub = _stub(srv.ports[0])
        with channel:
            hw = stub.ListHardware(pb.ListHardwareRequest(), timeout=30)
            team = pb.EstimateRequest(onnx=MODEL, profile="team-npu")
            fast, base = (
                stub.Estimate(team, timeout=30),
                stub.Estimate(pb.EstimateRequest(onnx=MODEL, profile="edge-npu"), timeout=30),
            )
    served = {p.name: p for p in hw.profiles}
    assert {"team-npu", "edge-npu", "rcar-gen5-npu", "cpu-ort"} <= set(served)
    assert served["team-npu"].path == str(path) and served["team-npu"].parameters["clock_ghz"] == 3
    assert fast.profile == "team-npu" and fast.latency_ms < base.latency_ms

"""The estimator server's /metrics, scraped over HTTP after real gRPC requests."""

from __future__ import annotations

import subprocess
import sys
import threading

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.estimator import ROOT
from support.metrics import scrape, scrape_port

from gen5nas.errors import Gen5NasError
from gen5nas.estimator._proto import estimator_pb2 as pb
from gen5nas.estimator._proto import estimator_pb2_grpc as pb_grpc
from gen5nas.estimator.engine import EstimatorEngine
from gen5nas.estimator.server import start_server
from gen5nas.estimator.synthetic import convnet

MODEL = convnet(resolution=32, channels=(8, 16))
REQUESTS = "gen5nas_estimator_requests_total"
DURATION = "gen5nas_estimator_request_duration_seconds"


@pytest.fixture
def server():
    handle = start_server([0], metrics_port=0)
    yield handle
    handle.stop(grace=1)


def _port(server) -> int:
    assert server.metrics is not None and server.metrics.endpoint is not None
    return server.metrics.endpoint.port


def test_requests_are_counted_by_method_backend_and_code(server) -> None:
    sent = [
        pb.EstimateRequest(onnx=MODEL),
        pb.EstimateRequest(onnx=MODEL, profile="edge-npu"),
        pb.EstimateRequest(onnx=MODEL, backend="tpu-magic"),
        pb.EstimateRequest(),
        pb.EstimateRequest(onnx=MODEL, profile="no-such-chip"),
    ]
    with grpc.insecure_channel(server.addresses[0]) as channel:
        stub = pb_grpc.EstimatorStub(channel)
        ok = stub.Estimate(sent[0], timeout=30)
        stub.Estimate(sent[1], timeout=30)
        with pytest.raises(grpc.RpcError) as bad:
            stub.Estimate(sent[2], timeout=30)
        with pytest.raises(grpc.RpcError) as empty:
            stub.Estimate(sent[3], timeout=30)
        with pytest.raises(grpc.RpcError) as unknown:
            stub.Estimate(sent[4], timeout=30)
        stub.ListHardware(pb.ListHardwareRequest(), timeout=30)
        health = health_pb2_grpc.HealthStub(channel)
        health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert ok.backend == "analytical"
    assert bad.value.code() == empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND

    m = scrape_port(_port(server))
    assert m.values(REQUESTS) and all(
        set(labels) == {"method", "backend", "code"} for labels, _ in m.values(REQUESTS)
    )
    assert m.value(REQUESTS, method="Estimate", backend="analytical", code="OK") == 2
    # An unknown backend is "other" (no series per typo); an empty request asked for nothing,
    # so the default profile's default backend.
    assert m.value(REQUESTS, method="Estimate", backend="other", code="INVALID_ARGUMENT") == 1
    assert m.value(REQUESTS, method="Estimate", backend="analytical", code="INVALID_ARGUMENT") == 1
    assert m.value(REQUESTS, method="Estimate", backend="other", code="NOT_FOUND") == 1
    assert m.value(REQUESTS, method="ListHardware", backend="none", code="OK") == 1
    assert m.total(REQUESTS) == 6  # the health check is not an Estimator RPC
    # Every answered request is timed once, in its (method, backend) series.
    assert m.value(f"{DURATION}_count", method="Estimate", backend="analytical") == 3
    assert m.value(f"{DURATION}_count", method="Estimate", backend="other") == 2
    assert m.value(f"{DURATION}_count", method="ListHardware", backend="none") == 1
    buckets = m.values(f"{DURATION}_bucket", method="Estimate", backend="analytical")
    assert [v for labels, v in buckets if labels["le"] == "+Inf"] == [3]
    assert m.value(f"{DURATION}_sum", method="Estimate", backend="analytical") > 0
    # Every Estimate request's size; the sum is the bytes received.
    sizes = [r.ByteSize() for r in sent]
    assert m.value("gen5nas_estimator_request_size_bytes_count") == 5
    assert m.value("gen5nas_estimator_request_size_bytes_sum") == sum(sizes)
    assert min(sizes[:2]) > len(MODEL)  # the model is the bulk of a request
    assert m.value("gen5nas_estimator_requests_in_flight", method="Estimate") == 0
    # The model was analysed once: later requests hit the graph cache (the refused ones stop
    # before the analysis: backend and profile are checked first).
    assert m.value("gen5nas_estimator_cache_misses_total", cache="graph") == 1
    assert m.value("gen5nas_estimator_cache_hits_total", cache="graph") == 1
    assert m.value("gen5nas_estimator_cache_entries", cache="graph") == 1


def test_arch_requests_count_the_arch_cache(server) -> None:
    from gen5nas.spec import load_space

    space = load_space("mobilenetv2_tiny")
    arch_yaml = space.min().to_yaml()
    with grpc.insecure_channel(server.addresses[0]) as channel:
        stub = pb_grpc.EstimatorStub(channel)
        for _ in range(3):
            req = pb.EstimateRequest(arch=pb.ArchRef(space="mobilenetv2_tiny", arch_yaml=arch_yaml))
            stub.Estimate(req, timeout=60)
    m = scrape_port(_port(server))
    assert m.value(REQUESTS, method="Estimate", backend="analytical", code="OK") == 3
    assert m.value("gen5nas_estimator_cache_misses_total", cache="arch_graph") == 1
    assert m.value("gen5nas_estimator_cache_hits_total", cache="arch_graph") == 2
    size = pb.EstimateRequest(arch=pb.ArchRef(space="mobilenetv2_tiny", arch_yaml=arch_yaml))
    assert m.value("gen5nas_estimator_request_size_bytes_sum") == 3 * size.ByteSize()


class _HeldEngine(EstimatorEngine):
    """An engine whose estimate waits until the test lets it go (to see a request in flight)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()

    def estimate(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.entered.set()
        assert self.release.wait(30)
        return super().estimate(*args, **kwargs)


def test_a_request_being_answered_is_in_flight() -> None:
    engine = _HeldEngine()
    server = start_server([0], engine=engine, metrics_port=0)
    try:
        with grpc.insecure_channel(server.addresses[0]) as channel:
            stub = pb_grpc.EstimatorStub(channel)
            future = stub.Estimate.future(pb.EstimateRequest(onnx=MODEL), timeout=60)
            assert engine.entered.wait(30)
            during = scrape_port(_port(server))
            engine.release.set()
            assert future.result().backend == "analytical"
        after = scrape_port(_port(server))
    finally:
        engine.release.set()
        server.stop(grace=1)
    assert during.value("gen5nas_estimator_requests_in_flight", method="Estimate") == 1
    assert during.total(REQUESTS) == 0  # counted once answered
    assert after.value("gen5nas_estimator_requests_in_flight", method="Estimate") == 0
    assert after.value(REQUESTS, method="Estimate", backend="analytical", code="OK") == 1


def test_a_taken_metrics_port_is_a_clear_error_and_frees_the_grpc_port(server) -> None:
    with pytest.raises(
        Gen5NasError, match=r"cannot serve /metrics on 127\.0\.0\.1:\d+.*--metrics-port"
    ):
        start_server([0], metrics_port=_port(server))
    with pytest.raises(
        Gen5NasError, match=r"--metrics-port: must be a TCP port \(0-65535\), got 70000"
    ):
        start_server([0], metrics_port=70000)


def test_cli_serves_metrics_on_the_flag_port() -> None:
    cmd = [sys.executable, "-m", "gen5nas", "estimator", "serve", "--host", "127.0.0.1",
           "--port", "0", "--metrics-port", "0", "--grace", "1"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert proc.stdout is not None
        listening = proc.stdout.readline()
        metrics_line = proc.stdout.readline()
        assert "listening on" in listening, proc.stderr.read() if proc.stderr else ""
        assert metrics_line.startswith("estimator metrics on http://127.0.0.1:"), metrics_line
        url = metrics_line.split(" on ", 1)[1].strip()
        grpc_address = listening.split("listening on", 1)[1].split()[0]
        with grpc.insecure_channel(grpc_address) as channel:
            pb_grpc.EstimatorStub(channel).Estimate(pb.EstimateRequest(onnx=MODEL), timeout=30)
        m = scrape(url)
        assert m.value(REQUESTS, method="Estimate", backend="analytical", code="OK") == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)

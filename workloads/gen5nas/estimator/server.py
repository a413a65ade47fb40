"""The estimator's gRPC server: one process, one thread pool, any number of ports.

Besides the ``gen5nas.ppa.v1.Estimator`` service it serves ``grpc.health.v1.Health`` (the
overall status "", the service name, and one entry per backend: "analytical", "onnxruntime") and
server reflection, so ``grpcurl`` and Kubernetes gRPC probes work. A backend's entry follows
its state: "onnxruntime" is NOT_SERVING while its worker process is down (killed after a run
overstayed its deadline and restarting, or unable to start). Stopping is graceful: every
health entry turns NOT_SERVING first (probes and load balancers stop sending), then in-flight
requests drain for ``grace`` seconds, then the measured backend's worker is stopped, which ends
any measurement still running.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gen5nas.errors import Gen5NasError
from gen5nas.estimator._proto import estimator_pb2 as pb
from gen5nas.estimator.engine import EstimatorEngine
from gen5nas.estimator.metrics import EstimatorMetrics
from gen5nas.estimator.profiles import ProfileRegistry
from gen5nas.estimator.service import DEFAULT_MAX_REQUEST_S, EstimatorServicer

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Estimator"].full_name
BACKEND_HEALTH_NAMES = ("analytical", "onnxruntime")


class EstimatorServer:
    """A running server: ``.ports`` (bound, in the order asked), ``.stop(grace)``, ``.wait()``."""

    def __init__(
        self,
        server: grpc.Server,
        ports: list[int],
        host: str,
        servicer: EstimatorServicer,
        health_servicer: health.HealthServicer,
    ) -> None:
        self._server = server
        self.ports = ports
        self.host = host
        self.servicer = servicer
        self.health = health_servicer
        self._stopped = threading.Event()
        self.metrics: EstimatorMetrics | None = None  # set when /metrics is served (.endpoint)

    @property
    def addresses(self) -> list[str]:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "[::]", "::") else self.host
        return [f"{host}:{p}" for p in self.ports]

    def stop(self, grace: float | None = 5.0, drain_delay: float = 0.0) -> None:
        """Health NOT_SERVING, wait ``drain_delay`` (time for probes to notice), then stop
        accepting and let in-flight requests finish within ``grace`` seconds."""
        if self._stopped.is_set():
            return
        self.health.enter_graceful_shutdown()
        if drain_delay > 0:
            time.sleep(drain_delay)
        self._server.stop(grace).wait()
        self.servicer.engine.close()
        if self.metrics is not None:
            self.metrics.close()
        self._stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._server.wait_for_termination(timeout)


def start_server(
    ports: Sequence[int] | int = 0,
    profiles_dir: str | Path | Iterable[str | Path] | None = None,
    *,
    host: str = "127.0.0.1",
    max_workers: int = 8,
    max_concurrent_rpcs: int | None = None,
    max_model_mb: float = 256,
    max_request_s: float = DEFAULT_MAX_REQUEST_S,
    measure_memory_mb: int | None = None,
    engine: EstimatorEngine | None = None,
    metrics_port: int | None = None,
) -> EstimatorServer:
    """Start an estimator listening on every port of ``ports`` (0 = a free one) on ``host``.

    ``max_concurrent_rpcs`` bounds the requests in progress (others get RESOURCE_EXHAUSTED, and
    the client tries another endpoint); ``max_model_mb`` bounds a model's size,
    ``max_request_s`` the time of a request without a (shorter) deadline, and
    ``measure_memory_mb`` the onnxruntime worker's memory. ``metrics_port``: serve Prometheus
    ``/metrics`` there (0 = a free port; None = not)."""
    port_list = [ports] if isinstance(ports, int) else list(ports)
    if not port_list:
        port_list = [0]
    if profiles_dir is None:
        dirs: list[str | Path] = []
    elif isinstance(profiles_dir, str | Path):
        dirs = [profiles_dir]
    else:
        dirs = list(profiles_dir)
    max_model_bytes = int(max_model_mb * 2**20)
    engine = engine or EstimatorEngine(
        ProfileRegistry(dirs), max_model_bytes=max_model_bytes, measure_memory_mb=measure_memory_mb
    )
    # gRPC's own limit sits above the model limit so that an oversized model gets our message
    # (which names the limit and the flag) rather than a bare transport error.
    message_limit = engine.max_model_bytes + 4 * 2**20
    metrics = EstimatorMetrics(engine) if metrics_port is not None else None
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="estimator"),
        options=[
            ("grpc.max_receive_message_length", message_limit),
            ("grpc.max_send_message_length", 256 * 2**20),
            ("grpc.so_reuseport", 0),  # a port given twice must fail, not be shared silently
        ],
        maximum_concurrent_rpcs=max_concurrent_rpcs,
        interceptors=[metrics.interceptor(SERVICE_NAME)] if metrics is not None else None,
    )
    servicer = EstimatorServicer(engine, max_request_s=max_request_s)
    server.add_generic_rpc_handlers((_estimator_handlers(servicer),))
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    bound: list[int] = []
    for port in port_list:
        try:
            got = server.add_insecure_port(f"{host}:{port}")
        except RuntimeError as exc:
            got = 0
            log.debug("bind %s:%s failed: %s", host, port, exc)
        if got == 0:
            server.stop(None)
            raise Gen5NasError(
                f"cannot listen on {host}:{port} (in use, or not an address of this machine); "
                f"pick another --port or --host"
            )
        bound.append(got)
    if metrics is not None and metrics_port is not None:
        try:
            metrics.serve(metrics_port, host)
        except Gen5NasError:
            server.stop(None)
            raise
    server.start()
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    health_servicer.set("", serving)
    health_servicer.set(SERVICE_NAME, serving)
    health_servicer.set("analytical", serving)
    has_ort = importlib.util.find_spec("onnxruntime") is not None
    health_servicer.set("onnxruntime", serving if has_ort else not_serving)
    engine.on_backend_health(
        lambda backend, ok: health_servicer.set(backend, serving if ok else not_serving)
    )
    log.info("estimator listening on %s", ", ".join(f"{host}:{p}" for p in bound))
    handle = EstimatorServer(server, bound, host, servicer, health_servicer)
    handle.metrics = metrics
    return handle


def _estimator_handlers(servicer: EstimatorServicer) -> grpc.GenericRpcHandler:
    """The Estimator service with requests left as bytes: the servicer parses them, so that a
    malformed one is INVALID_ARGUMENT naming its field (gRPC's deserializer would answer
    INTERNAL)."""
    methods: dict[str, tuple[Any, Any]] = {
        "Estimate": (servicer.Estimate, pb.EstimateResponse),
        "ListHardware": (servicer.ListHardware, pb.ListHardwareResponse),
    }
    assert set(methods) == set(pb.DESCRIPTOR.services_by_name["Estimator"].methods_by_name)
    return grpc.method_handlers_generic_handler(
        SERVICE_NAME,
        {
            name: grpc.unary_unary_rpc_method_handler(
                method, request_deserializer=None, response_serializer=resp.SerializeToString
            )
            for name, (method, resp) in methods.items()
        },
    )

"""Prometheus metrics of the estimator server, served as ``/metrics`` on a port of their own.

A gRPC server interceptor observes every call of the Estimator service, so the servicer knows
nothing of metrics; the engine's cache counters are read when Prometheus scrapes. Each server
has its own registry (several servers may run in one process, as in the tests).

========================================================  =========  ==========================
name                                                      type       labels
========================================================  =========  ==========================
``gen5nas_estimator_requests_total``                      counter    method, backend, code
``gen5nas_estimator_request_duration_seconds``            histogram  method, backend
``gen5nas_estimator_requests_in_flight``                  gauge      method
``gen5nas_estimator_request_size_bytes``                  histogram  (Estimate requests: the
                                                                     model bytes received)
``gen5nas_estimator_cache_hits_total`` / ``_misses_total``  counter    cache
``gen5nas_estimator_cache_entries``                       gauge      cache
========================================================  =========  ==========================

``backend`` is the backend that answered (``analytical``, ``onnxruntime``); for a refused
request the one it asked for, its profile's default when it named none, ``other`` for a name
no profile has (a typo must not make a new series), ``none`` for ListHardware. The servicer
parses requests itself (they reach it as bytes), so only a refused request is parsed here
again, to read its backend and profile.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gen5nas.estimator._proto import estimator_pb2 as pb
from gen5nas.estimator.engine import EstimatorEngine
from gen5nas.estimator.profiles import BACKENDS
from gen5nas.estimator.service import parse_request
from gen5nas.metrics_http import MetricsEndpoint

# 4 KiB .. 256 MiB (the default --max-model-mb), x4 apart.
MODEL_BYTES_BUCKETS = tuple(float(2**k) for k in range(12, 29, 2))
# An analytical estimate takes ~1 ms, a measured one up to seconds.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class EstimatorMetrics:
    """The metrics of one server; ``interceptor(service)`` observes it, ``serve`` exposes it."""

    def __init__(self, engine: EstimatorEngine) -> None:
        self.engine = engine
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gen5nas_estimator_requests",
            "Estimator RPCs answered, by method, backend and gRPC status code.",
            ["method", "backend", "code"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "gen5nas_estimator_request_duration_seconds",
            "Time to answer an Estimator RPC.",
            ["method", "backend"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "gen5nas_estimator_requests_in_flight",
            "Estimator RPCs being answered now.",
            ["method"],
            registry=self.registry,
        )
        self.request_bytes = Histogram(
            "gen5nas_estimator_request_size_bytes",
            "Size of the Estimate requests received (an ONNX model is most of one; an arch "
            "request is a few KiB).",
            buckets=MODEL_BYTES_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_CacheCollector(engine))
        self.endpoint: MetricsEndpoint | None = None  # where /metrics is served

    def interceptor(self, service: str) -> grpc.ServerInterceptor:
        """Observes the unary methods of ``service`` (the full name); other services (health,
        reflection) pass untouched."""
        return _MetricsInterceptor(self, service)

    def serve(self, port: int, host: str = "0.0.0.0") -> MetricsEndpoint:
        """Serve ``/metrics`` on ``host:port`` (0 = a free port) in a daemon thread."""
        self.endpoint = MetricsEndpoint(self.registry, port, host)
        return self.endpoint

    def close(self) -> None:
        if self.endpoint is not None:
            self.endpoint.close()

    def backend_of(self, method: str, request: Any, response: Any) -> str:
        answered: str | None = getattr(response, "backend", None)
        if answered:
            return answered
        if method != "Estimate":
            return "none"
        if isinstance(request, bytes):
            try:
                request = parse_request(pb.EstimateRequest, request)
            except Exception:  # malformed: refused before anything was asked of a backend
                return "other"
        if request.backend:
            return request.backend if request.backend in BACKENDS else "other"
        try:
            return self.engine.registry.get(request.profile).default_backend
        except Exception:  # an unknown profile: the request was refused for it
            return "other"


class _MetricsInterceptor(grpc.ServerInterceptor):
    def __init__(self, metrics: EstimatorMetrics, service: str) -> None:
        self.metrics = metrics
        self.prefix = f"/{service}/"

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        full_name: str = handler_call_details.method  # type: ignore[attr-defined]
        if handler is None or handler.unary_unary is None or not full_name.startswith(self.prefix):
            return handler
        behavior = handler.unary_unary
        method = full_name[len(self.prefix) :]
        metrics = self.metrics

        def observed(request: Any, context: grpc.ServicerContext) -> Any:
            in_flight = metrics.in_flight.labels(method)
            in_flight.inc()
            if method == "Estimate":
                size = len(request) if isinstance(request, bytes) else request.ByteSize()
                metrics.request_bytes.observe(size)
            response = None
            t0 = time.perf_counter()
            try:
                response = behavior(request, context)
                return response
            finally:
                elapsed = time.perf_counter() - t0
                in_flight.dec()
                # An abort leaves its code on the context; an exception that escaped the
                # servicer reaches the client as UNKNOWN.
                code = context.code()  # type: ignore[attr-defined]
                if code is None:
                    code = grpc.StatusCode.OK if response is not None else grpc.StatusCode.UNKNOWN
                backend = metrics.backend_of(method, request, response)
                metrics.requests.labels(method, backend, code.name).inc()
                metrics.duration.labels(method, backend).observe(elapsed)

        return grpc.unary_unary_rpc_method_handler(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class _CacheCollector(Collector):
    """The engine's LRU caches at scrape time: hits, misses, entries."""

    def __init__(self, engine: EstimatorEngine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        hits = CounterMetricFamily(
            "gen5nas_estimator_cache_hits",
            "Lookups of the estimator's caches (graph analyses, arch graphs) that hit.",
            labels=["cache"],
        )
        misses = CounterMetricFamily(
            "gen5nas_estimator_cache_misses",
            "Lookups of the estimator's caches that missed (the work was done).",
            labels=["cache"],
        )
        entries = GaugeMetricFamily(
            "gen5nas_estimator_cache_entries", "Entries held by each cache.", labels=["cache"]
        )
        for name, cache in self.engine.caches().items():
            hits.add_metric([name], cache.hits)
            misses.add_metric([name], cache.misses)
            entries.add_metric([name], len(cache))
        yield hits
        yield misses
        yield entries

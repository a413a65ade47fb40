"""The operator's Prometheus metrics, served as ``/metrics`` on ``GEN5NAS_METRICS_PORT``.

``resync.sync`` (every reconcile, from a kopf handler or the resync loop) and
``resync.resync_pass`` record here; ``handlers.startup`` serves the registry. Recording costs a
few dict updates, so it happens whether or not the port is set.

=========================================================  =========  ========================
name                                                       type       labels
=========================================================  =========  ========================
``gen5nas_operator_reconciles_total``                      counter    kind, result: ok (the
                                                                      status applied), failed
                                                                      (the resource is Failed),
                                                                      error (an exception)
``gen5nas_operator_reconcile_errors_total``                counter    kind, error (its class)
``gen5nas_operator_reconcile_duration_seconds``            histogram  kind
``gen5nas_operator_last_success_timestamp_seconds``        gauge      kind: the last reconcile
                                                                      that did not raise
``gen5nas_operator_resync_last_success_timestamp_seconds`` gauge      the last resync pass that
                                                                      listed every kind
``gen5nas_operator_resources``                             gauge      kind, namespace, phase
                                                                      (as the last pass listed)
=========================================================  =========  ========================

Plus ``process_*`` (CPU, memory, open files) and ``python_*`` of the operator process.
``time() - gen5nas_operator_resync_last_success_timestamp_seconds`` is the time since the last
successful sync.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gen5nas.metrics_http import MetricsEndpoint
from gen5nas_operator.common.conditions import FAILED

NO_PHASE = "None"  # a resource no reconcile has written a status to yet
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class OperatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        self.reconciles = Counter(
            "gen5nas_operator_reconciles",
            "Reconciles run, by kind and result (ok, failed: the resource is Failed, error: "
            "an exception; retried on the next resync).",
            ["kind", "result"],
            registry=self.registry,
        )
        self.errors = Counter(
            "gen5nas_operator_reconcile_errors",
            "Reconciles that raised, by kind and exception class.",
            ["kind", "error"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "gen5nas_operator_reconcile_duration_seconds",
            "Time of one reconcile (read, children, status patch).",
            ["kind"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.last_success = Gauge(
            "gen5nas_operator_last_success_timestamp_seconds",
            "Unix time of the last reconcile of each kind that did not raise.",
            ["kind"],
            registry=self.registry,
        )
        self.resync_last_success = Gauge(
            "gen5nas_operator_resync_last_success_timestamp_seconds",
            "Unix time of the last resync pass that listed every kind in every namespace.",
            registry=self.registry,
        )
        self.resources = _ResourcesCollector()
        self.registry.register(self.resources)

    @contextlib.contextmanager
    def reconcile(self, kind: str) -> Iterator[Callable[[Any], None]]:
        """Times the block; call the yielded function with the outcome (None: gone); an
        exception escaping the block is counted as an error and re-raised."""
        t0 = time.perf_counter()
        outcome: list[Any] = []
        try:
            yield outcome.append
        except Exception as exc:
            self.reconciles.labels(kind, "error").inc()
            self.errors.labels(kind, type(exc).__name__).inc()
            raise
        finally:
            self.duration.labels(kind).observe(time.perf_counter() - t0)
        status = getattr(outcome[0], "status", None) if outcome else None
        failed = isinstance(status, dict) and status.get("phase") == FAILED
        self.reconciles.labels(kind, "failed" if failed else "ok").inc()
        self.last_success.labels(kind).set(time.time())

    def listed(self, kind: str, namespace: str | None, items: Sequence[dict[str, Any]]) -> None:
        """What a resync pass listed of ``kind`` in ``namespace`` (None: every namespace)."""
        self.resources.replace(kind, namespace, items)

    def resync_succeeded(self) -> None:
        self.resync_last_success.set(time.time())

    def serve(self, port: int, host: str = "0.0.0.0") -> MetricsEndpoint:
        return MetricsEndpoint(self.registry, port, host, option="GEN5NAS_METRICS_PORT")


class _ResourcesCollector(Collector):
    """Resources by (kind, namespace, phase), as last listed (phases with none are 0)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], dict[str, int]] = {}  # (kind, ns) -> phase -> n

    def replace(self, kind: str, namespace: str | None, items: Sequence[dict[str, Any]]) -> None:
        fresh: dict[tuple[str, str], dict[str, int]] = {}
        for body in items:
            ns = body["metadata"].get("namespace", namespace or "")
            phase = (body.get("status") or {}).get("phase") or NO_PHASE
            counts = fresh.setdefault((kind, ns), {})
            counts[phase] = counts.get(phase, 0) + 1
        with self._lock:
            for key in list(self._counts):
                if key[0] == kind and (namespace is None or key[1] == namespace):
                    # Still listed, so a phase left behind reads 0 rather than vanishing.
                    self._counts[key] = {p: 0 for p in self._counts[key]}
            for key, counts in fresh.items():
                self._counts.setdefault(key, {}).update(counts)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "gen5nas_operator_resources",
            "Custom resources by kind, namespace and phase, as the last resync pass listed them.",
            labels=["kind", "namespace", "phase"],
        )
        with self._lock:
            for (kind, ns), counts in sorted(self._counts.items()):
                for phase, n in sorted(counts.items()):
                    family.add_metric([kind, ns, phase], n)
        yield family


METRICS = OperatorMetrics()

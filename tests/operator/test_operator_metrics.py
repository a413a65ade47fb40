"""The operator's /metrics: what its children offer to Prometheus (ports, annotations, the
labels the chart's ServiceMonitor selects), the recording itself, and the real operator process
scraped after it reconciled a resource on the real API server."""

from __future__ import annotations

import time
from typing import Any

import pytest
from support.metrics import Scrape, scrape_port
from support.operator_e2e import Cluster, OperatorProcess, training, wait_for

from gen5nas.errors import SpecError
from gen5nas.metrics_http import MetricsEndpoint
from gen5nas.spec.search import NASSearchSpec
from gen5nas.spec.space import parse_model
from gen5nas_operator.common.ensure import Outcome
from gen5nas_operator.common.ownership import Owner
from gen5nas_operator.kinds.search.children import search_children
from gen5nas_operator.metrics import OperatorMetrics
from gen5nas_operator.settings import Settings

OWNER = Owner("NASSearch", "nas-1", "team-a", "1234abcd-0000-0000-0000-000000000000")
# The chart's estimator ServiceMonitor (charts/gen5nas/templates/servicemonitor.yaml).
MONITOR_SELECTOR = {
    "app.kubernetes.io/name": "gen5nas",
    "app.kubernetes.io/managed-by": "gen5nas-operator",
    "app.kubernetes.io/component": "estimator",
}


def _children(settings: Settings) -> list[dict[str, Any]]:
    raw = {"checkpoint": "/results/x", "dataset": {"kind": "digits"}, "parallelism": 2}
    spec = parse_model(NASSearchSpec, raw, source="t")
    return search_children(OWNER, spec, raw, settings, "/results/ck", ("pg", "dsn"))


def _scraped(template: dict[str, Any], port: int) -> None:
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": "/metrics",
    }
    container = template["spec"]["containers"][0]
    assert {"name": "metrics", "containerPort": port, "protocol": "TCP"} in container["ports"]
    command = container["command"]
    assert command[command.index("--metrics-port") + 1] == str(port)


def test_estimator_and_search_pods_offer_metrics_where_the_chart_looks() -> None:
    _, deployment, service, job = _children(Settings())  # defaults: 9464 for both
    _scraped(deployment["spec"]["template"], 9464)
    _scraped(job["spec"]["template"], 9464)
    assert MONITOR_SELECTOR.items() <= service["metadata"]["labels"].items()
    assert {"name": "metrics", "port": 9464, "targetPort": "metrics"} in service["spec"]["ports"]
    # The grpc ports are all still there, the metrics port beside them.
    assert [p["name"] for p in service["spec"]["ports"]] == ["grpc-0", "metrics"]

    _, deployment, service, job = _children(
        Settings(estimator_metrics_port=9100, workload_metrics_port=0)
    )
    _scraped(deployment["spec"]["template"], 9100)
    assert service["spec"]["ports"][-1]["port"] == 9100
    assert "--metrics-port" not in job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "annotations" not in job["spec"]["template"]["metadata"]


def test_metrics_ports_come_from_the_environment_and_bad_ones_are_refused() -> None:
    s = Settings.from_env({"GEN5NAS_METRICS_PORT": "9090", "GEN5NAS_ESTIMATOR_METRICS_PORT": "0"})
    assert (s.metrics_port, s.estimator_metrics_port, s.workload_metrics_port) == (9090, 0, 9464)
    assert Settings.from_env({}).metrics_port == 0  # off unless asked (the chart sets 9090)
    with pytest.raises(SpecError, match=r"GEN5NAS_ESTIMATOR_METRICS_PORT: must be a TCP port"):
        Settings.from_env({"GEN5NAS_ESTIMATOR_METRICS_PORT": "70000"})
    with pytest.raises(SpecError, match=r"GEN5NAS_METRICS_PORT: 'x' is not a valid int"):
        Settings.from_env({"GEN5NAS_METRICS_PORT": "x"})


def _body(name: str, ns: str, phase: str | None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns},
        "status": {"phase": phase} if phase else {},
    }


def test_reconciles_errors_and_phases_are_recorded() -> None:
    m = OperatorMetrics()
    t0 = time.time()
    with m.reconcile("NASSearch") as record:
        record(Outcome({"phase": "Running"}))
    with m.reconcile("NASSearch") as record:
        record(Outcome({"phase": "Failed"}))
    with pytest.raises(RuntimeError), m.reconcile("NASSearch"):
        raise RuntimeError("API server went away")
    m.listed("NASSearch", "a", [_body("x", "a", "Running"), _body("y", "a", None)])
    m.listed("NASSearch", "b", [_body("z", "b", "Succeeded")])
    m.listed("NASSearch", "a", [_body("x", "a", "Succeeded")])  # y deleted, x finished
    m.resync_succeeded()
    with MetricsEndpoint(m.registry, 0, "127.0.0.1") as endpoint:
        s = scrape_port(endpoint.port)
    reconciles = "gen5nas_operator_reconciles_total"
    assert s.value(reconciles, kind="NASSearch", result="ok") == 1
    assert s.value(reconciles, kind="NASSearch", result="failed") == 1
    assert s.value(reconciles, kind="NASSearch", result="error") == 1
    errors = "gen5nas_operator_reconcile_errors_total"
    assert s.value(errors, kind="NASSearch", error="RuntimeError") == 1
    assert s.value("gen5nas_operator_reconcile_duration_seconds_count", kind="NASSearch") == 3
    # The timestamp is of the last reconcile that did not raise.
    last = s.value("gen5nas_operator_last_success_timestamp_seconds", kind="NASSearch")
    assert last is not None and last >= t0
    assert s.value("gen5nas_operator_resync_last_success_timestamp_seconds") >= t0
    res = "gen5nas_operator_resources"
    assert s.value(res, kind="NASSearch", namespace="a", phase="Succeeded") == 1
    assert s.value(res, kind="NASSearch", namespace="a", phase="Running") == 0
    assert s.value(res, kind="NASSearch", namespace="a", phase="None") == 0
    assert s.value(res, kind="NASSearch", namespace="b", phase="Succeeded") == 1
    assert s.value("process_resident_memory_bytes") > 0


@pytest.mark.e2e
def test_the_running_operator_serves_metrics_after_a_reconcile(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    t0 = time.time()
    cluster.apply(training("st-metrics"))
    wait_for("train Job", lambda: cluster.get("job", "st-metrics-train"))
    kind = "SupernetTraining"

    def listed() -> Scrape | None:
        # A pass updates the listing per kind as it goes and its timestamp at the end: a
        # scrape in between sees the training listed before the pass has finished.
        s = scrape_port(operator.metrics_port)
        phases = s.values("gen5nas_operator_resources", kind=kind, namespace=cluster.ns)
        finished = s.value("gen5nas_operator_resync_last_success_timestamp_seconds") >= t0
        return s if finished and any(v == 1 for _, v in phases) else None

    s = wait_for("a finished resync pass listing the training", listed, timeout=30)
    assert s.value("gen5nas_operator_reconciles_total", kind=kind, result="ok") >= 1
    assert s.value("gen5nas_operator_last_success_timestamp_seconds", kind=kind) >= t0
    assert s.value("gen5nas_operator_resync_last_success_timestamp_seconds") >= t0
    phase = cluster.status("supernettraining", "st-metrics").get("phase")
    assert phase in {labels["phase"] for labels, v in s.values(
        "gen5nas_operator_resources", kind=kind, namespace=cluster.ns) if v == 1}  # fmt: skip
    assert s.total("gen5nas_operator_reconcile_errors_total") == 0

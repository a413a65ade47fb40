"""How a child pod offers its Prometheus ``/metrics``: a container port named ``metrics`` (what
a ServiceMonitor or PodMonitor names) and the ``prometheus.io/*`` annotations (what
annotation-based scrape configs read)."""

from __future__ import annotations

from typing import Any

PORT_NAME = "metrics"


def scrape_annotations(port: int) -> dict[str, str]:
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": "/metrics",
    }


def expose_metrics(template: dict[str, Any], port: int) -> dict[str, Any]:
    """``template`` (a pod template) with the port on its first container and the annotations
    on its metadata; unchanged when ``port`` is 0 (metrics off)."""
    if not port:
        return template
    meta = template.setdefault("metadata", {})
    meta["annotations"] = {**(meta.get("annotations") or {}), **scrape_annotations(port)}
    container = template["spec"]["containers"][0]
    container["ports"] = [
        *(container.get("ports") or []),
        {"name": PORT_NAME, "containerPort": port, "protocol": "TCP"},
    ]
    return template


def metrics_args(port: int) -> list[str]:
    """The workload CLIs' flag (``gen5nas estimator serve|search|train --metrics-port``)."""
    return ["--metrics-port", str(port)] if port else []

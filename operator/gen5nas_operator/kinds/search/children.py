"""A NASSearch's children: the spec ConfigMap, the PPA estimator (a Deployment of gRPC servers
and its headless Service, unless the spec names servers) and the search Job (``parallelism``
workers on one shared study)."""

from __future__ import annotations

from typing import Any

from gen5nas.spec.search import NASSearchSpec
from gen5nas_operator.common.ownership import (
    Owner,
    child_name,
    labels,
    metadata,
    selector,
    work_dir,
)
from gen5nas_operator.common.pods import (
    SPEC_FILE,
    STORAGE_ARG,
    Manifest,
    effective_spec,
    job_manifest,
    pod_template,
    restricted,
    secret_env,
    spec_configmap,
    tolerations,
)
from gen5nas_operator.common.scrape import PORT_NAME, expose_metrics, metrics_args
from gen5nas_operator.settings import Settings


def study_name(owner: Owner, spec: NASSearchSpec) -> str:
    """The spec's ``studyName``, else one unique to this resource (a re-created NASSearch of
    the same name starts a fresh study rather than resuming a stranger's)."""
    return spec.study_name or f"{owner.namespace}.{owner.name}.{owner.uid[:8]}"


def estimator_endpoints(owner: Owner, spec: NASSearchSpec) -> list[dict[str, Any]]:
    """The seed's ``servers`` list pointing at the estimator's headless Service (its DNS name
    resolves to every ready replica)."""
    host = f"{child_name(owner, 'estimator')}.{owner.namespace}.svc"
    return [{"host": host, "ports": list(spec.estimator.ports)}]


def estimator_children(owner: Owner, spec: NASSearchSpec, settings: Settings) -> list[Manifest]:
    """The PPA estimator: a Deployment of gRPC servers (one process, several ports each, as
    the seed's server) and a headless Service so the client sees every replica."""
    est = spec.estimator
    ports = list(est.ports)
    # On SIGTERM: NOT_SERVING for 5 s (endpoints and clients move off) before draining.
    metrics_port = settings.estimator_metrics_port
    command = ["gen5nas", "estimator", "serve", "--drain-delay", "5", "--port", *map(str, ports),
               *metrics_args(metrics_port)]  # fmt: skip
    probe = {"grpc": {"port": ports[0]}, "periodSeconds": 10, "timeoutSeconds": 5}
    container = {
        "name": "estimator",
        "image": est.image or settings.estimator_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": command,
        "ports": [
            {"name": f"grpc-{i}", "containerPort": p, "protocol": "TCP"}
            for i, p in enumerate(ports)
        ],
        "readinessProbe": {**probe, "initialDelaySeconds": 2, "failureThreshold": 3},
        "livenessProbe": {**probe, "initialDelaySeconds": 15, "failureThreshold": 6},
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}},
    }
    pod_spec: dict[str, Any] = {"containers": [container], "automountServiceAccountToken": False}
    if spec.runtime.node_selector:
        pod_spec["nodeSelector"] = dict(spec.runtime.node_selector)
    if spec.runtime.tolerations:
        pod_spec["tolerations"] = tolerations(spec.runtime)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(owner, "estimator", "estimator"),
        "spec": {
            "replicas": est.replicas,
            "selector": {"matchLabels": selector(owner, "estimator")},
            "template": expose_metrics(
                {"metadata": {"labels": labels(owner, "estimator")}, "spec": restricted(pod_spec)},
                metrics_port,
            ),
        },
    }
    service_ports: list[dict[str, Any]] = [
        {"name": f"grpc-{i}", "port": p, "targetPort": p, "appProtocol": "grpc"}
        for i, p in enumerate(ports)
    ]
    if metrics_port:  # what the chart's estimator ServiceMonitor scrapes
        service_ports.append({"name": PORT_NAME, "port": metrics_port, "targetPort": PORT_NAME})
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, "estimator", "estimator"),
        "spec": {
            "clusterIP": "None",
            "selector": selector(owner, "estimator"),
            "ports": service_ports,
        },
    }
    return [deployment, service]


def search_overrides(owner: Owner, spec: NASSearchSpec, checkpoint: str) -> dict[str, Any]:
    """What the operator fills in: the checkpoint, the study name, the estimator endpoints
    (when the spec names none) and no storage URL (the DSN comes from a Secret)."""
    out: dict[str, Any] = {"checkpoint": checkpoint, "studyName": study_name(owner, spec)}
    if not spec.estimator.servers:
        out["estimator"] = {"servers": estimator_endpoints(owner, spec)}
    out["storage"] = {"url": None}
    return out


def search_children(
    owner: Owner,
    spec: NASSearchSpec,
    raw_spec: dict[str, Any],
    settings: Settings,
    checkpoint: str,
    dsn_secret: tuple[str, str],
) -> list[Manifest]:
    """ConfigMap, estimator Deployment + Service (unless the spec names servers), search Job."""
    overrides = search_overrides(owner, spec, checkpoint)
    out = [spec_configmap(owner, "search", effective_spec(raw_spec, overrides))]
    if not spec.estimator.servers:
        out += estimator_children(owner, spec, settings)
    out.append(searchjob(owner, spec, settings, checkpoint, dsn_secret))
    return out


def searchjob(
    owner: Owner,
    spec: NASSearchSpec,
    settings: Settings,
    checkpoint: str,
    dsn_secret: tuple[str, str],
) -> Manifest:
    """``parallelism`` workers on one shared study. No ``completions``: the Job is a work
    queue, done when the workers are, each of which stops when the study has maxTrials."""
    rt = spec.runtime
    command = [
        "gen5nas", "search", "-f", SPEC_FILE, "--work-dir", work_dir(owner, rt),
        "--checkpoint", checkpoint, STORAGE_ARG, *metrics_args(settings.workload_metrics_port),
    ]  # fmt: skip
    template = pod_template(owner, "search", rt, settings, command, [secret_env(dsn_secret)])
    expose_metrics(template, settings.workload_metrics_port)
    return job_manifest(
        owner, "search", "search", template, parallelism=spec.parallelism,
        backoffLimit=3 * spec.parallelism,
    )  # fmt: skip

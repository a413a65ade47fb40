"""The pod side every child shares: the spec ConfigMap a child runs with ``gen5nas <step> -f``,
the pod template (image, resources, volumes, env), a Job around it, the study DSN's env var, and
the restricted security context every child pod runs with.

The contract with the workloads is the CLI: every child runs ``gen5nas <step> -f
/config/spec.yaml`` on a ConfigMap the operator writes from the CR (the same document a user
could run locally), plus flags for what only the cluster knows (work dir on the results PVC,
the checkpoint of a finished SupernetTraining, the study storage from a Secret). Nothing here
talks to the API server.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from gen5nas.spec.common import GROUP_VERSION, RuntimeSpec
from gen5nas_operator.common.ownership import Owner, child_name, labels, metadata
from gen5nas_operator.settings import Settings

Manifest = dict[str, Any]

CONFIG_MOUNT = "/config"
SPEC_FILE = f"{CONFIG_MOUNT}/spec.yaml"
STORAGE_ENV = "GEN5NAS_STORAGE_URL"  # from the Secret; never written into a manifest
# The kubelet expands $(VAR) from the container's env: the pod spec holds only the reference.
STORAGE_ARG = f"--storage=$({STORAGE_ENV})"
GPU_RESOURCE = "nvidia.com/gpu"
# Every child pod meets the Kubernetes "restricted" Pod Security Standard: a fixed non-root user
# (the images' 65532; a UID, not a name, so the kubelet can check runAsNonRoot), no privilege
# escalation, no capabilities, the runtime's seccomp profile and a read-only root filesystem.
# What the workloads write outside their volumes (torch's and matplotlib's caches, tempfiles)
# goes to an emptyDir at /tmp, which is also $HOME.
RUN_AS = 65532
TMP_MOUNT = "/tmp"
TMP_SIZE = "16Gi"  # bounded: a runaway cache evicts the pod rather than filling the node's disk
POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS,
    "runAsGroup": RUN_AS,
    # The PVCs' files become group-writable by the pods; only when the root's group differs.
    "fsGroup": RUN_AS,
    "fsGroupChangePolicy": "OnRootMismatch",
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "privileged": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}


def effective_spec(raw_spec: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The CR's spec with the operator's cluster-only answers merged in (dicts deep-merged;
    a ``None`` override removes the key)."""
    out = copy.deepcopy(raw_spec)
    for key, value in overrides.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            base = out.get(key)
            out[key] = effective_spec(base if isinstance(base, dict) else {}, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def spec_configmap(owner: Owner, component: str, spec: dict[str, Any]) -> Manifest:
    """The ConfigMap holding the manifest the child runs with ``gen5nas <step> -f``."""
    document = {
        "apiVersion": GROUP_VERSION,
        "kind": owner.kind,
        "metadata": {"name": owner.name, "namespace": owner.namespace},
        "spec": spec,
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(owner, "spec", component),
        "data": {"spec.yaml": yaml.safe_dump(document, sort_keys=False)},
    }


def tolerations(runtime: RuntimeSpec) -> list[dict[str, Any]]:
    return [t.model_dump(by_alias=True, exclude_none=True) for t in runtime.tolerations]


def _resources(runtime: RuntimeSpec) -> dict[str, Any]:
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if runtime.cpu:
        requests["cpu"] = runtime.cpu
    if runtime.memory:
        requests["memory"] = runtime.memory
        limits["memory"] = runtime.memory
    if runtime.gpus_per_worker:
        # Extended resources are set in limits (requests default to them); both for clarity.
        limits[GPU_RESOURCE] = requests[GPU_RESOURCE] = str(runtime.gpus_per_worker)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def _volumes(
    owner: Owner, runtime: RuntimeSpec, settings: Settings, shm: bool = True
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": child_name(owner, "spec")}},
        {
            "name": "results",
            "persistentVolumeClaim": {"claimName": runtime.results_pvc or settings.results_pvc},
        },
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
        {"name": "results", "mountPath": runtime.results_mount_path},
    ]
    if runtime.dataset_pvc:
        volumes.append(
            {
                "name": "dataset",
                "persistentVolumeClaim": {"claimName": runtime.dataset_pvc, "readOnly": True},
            }
        )
        mounts.append(
            {"name": "dataset", "mountPath": runtime.dataset_mount_path, "readOnly": True}
        )
    if shm:
        # Data-loader workers pass batches through /dev/shm; the container default is 64 MiB.
        volumes.append(
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": runtime.shm_size}}
        )
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    return volumes, mounts


def restricted(pod_spec: dict[str, Any]) -> dict[str, Any]:
    """``pod_spec`` made to meet the restricted Pod Security Standard (see POD_SECURITY_CONTEXT),
    with a writable /tmp (also $HOME) for each container. Changes and returns ``pod_spec``."""
    pod_spec["securityContext"] = copy.deepcopy(POD_SECURITY_CONTEXT)
    pod_spec.setdefault("volumes", []).append({"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE}})
    for container in pod_spec["containers"]:
        container["securityContext"] = copy.deepcopy(CONTAINER_SECURITY_CONTEXT)
        container.setdefault("volumeMounts", []).append({"name": "tmp", "mountPath": TMP_MOUNT})
        container.setdefault("env", []).insert(0, {"name": "HOME", "value": TMP_MOUNT})
        container.setdefault("workingDir", TMP_MOUNT)  # the image's may not be writable
    return pod_spec


def _env(owner: Owner) -> list[dict[str, Any]]:
    return [
        {"name": "GEN5NAS_NAMESPACE", "value": owner.namespace},
        {"name": "GEN5NAS_RESOURCE", "value": f"{owner.kind}/{owner.name}"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]


def pod_template(
    owner: Owner,
    component: str,
    runtime: RuntimeSpec,
    settings: Settings,
    command: list[str],
    extra_env: list[dict[str, Any]] | None = None,
    container_name: str = "main",
    restart_policy: str = "Never",
    subdomain: str | None = None,
    service_account: str | None = None,
) -> dict[str, Any]:
    """``service_account``: the default when the spec names none."""
    volumes, mounts = _volumes(owner, runtime, settings)
    container: dict[str, Any] = {
        "name": container_name,
        "image": runtime.image or settings.workload_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": command,
        "env": _env(owner) + (extra_env or []),
        "volumeMounts": mounts,
        "resources": _resources(runtime),
        # The step's last words (an error, or a JSON result) reach the pod status.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    spec: dict[str, Any] = {
        "restartPolicy": restart_policy,
        "containers": [container],
        "volumes": volumes,
    }
    if runtime.node_selector:
        spec["nodeSelector"] = dict(runtime.node_selector)
    if runtime.tolerations:
        spec["tolerations"] = tolerations(runtime)
    if runtime.service_account_name or service_account:
        spec["serviceAccountName"] = runtime.service_account_name or service_account
    else:  # the namespace's default account: its token is of no use to the step
        spec["automountServiceAccountToken"] = False
    if subdomain:
        spec["subdomain"] = subdomain
    return {"metadata": {"labels": labels(owner, component)}, "spec": restricted(spec)}


def job_manifest(
    owner: Owner, role: str, component: str, template: dict[str, Any], **job_spec: Any
) -> Manifest:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(owner, role, component),
        "spec": {**job_spec, "template": template},
    }


def secret_env(dsn_secret: tuple[str, str]) -> dict[str, Any]:
    name, key = dsn_secret
    return {"name": STORAGE_ENV, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}

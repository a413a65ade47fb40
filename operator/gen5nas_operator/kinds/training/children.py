"""A SupernetTraining's children: the spec ConfigMap and either a Kubeflow PyTorchJob or an
Indexed Job with its headless rendezvous Service; plus the namespace's workload identity
(ServiceAccount, Role, RoleBinding) its pods run as."""

from __future__ import annotations

import copy
from typing import Any

from gen5nas.spec.common import RuntimeSpec
from gen5nas.spec.training import SupernetTrainingSpec
from gen5nas.train.progress_report import POD_NAME_ENV, POD_NAMESPACE_ENV
from gen5nas_operator.common.ownership import (
    LABEL_COMPONENT,
    MANAGED_BY,
    Owner,
    child_name,
    metadata,
    selector,
    work_dir,
)
from gen5nas_operator.common.pods import (
    SPEC_FILE,
    Manifest,
    effective_spec,
    job_manifest,
    pod_template,
    spec_configmap,
)
from gen5nas_operator.common.scrape import expose_metrics, metrics_args
from gen5nas_operator.settings import Settings

# Training pods run as this ServiceAccount (unless spec.runtime.serviceAccountName names one):
# it may patch pods in its namespace, so rank 0 can write its progress annotation.
WORKLOAD_SERVICE_ACCOUNT = "gen5nas-workload"


def training_checkpoint(owner: Owner, runtime: RuntimeSpec) -> str:
    """Where a SupernetTraining's result is read by later steps: its work dir (the CLIs
    resolve a directory to its best checkpoint, as ``--checkpoint`` documents)."""
    return work_dir(owner, runtime)


def _nproc(runtime: RuntimeSpec) -> int:
    return runtime.processes_per_worker or max(runtime.gpus_per_worker, 1)


def train_args(owner: Owner, runtime: RuntimeSpec) -> list[str]:
    return ["train", "-f", SPEC_FILE, "--work-dir", work_dir(owner, runtime)]


def _field_env(name: str, field_path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field_path}}}


# The pod's own name and namespace (downward API): where rank 0 reports its progress.
POD_ENV = [
    _field_env(POD_NAME_ENV, "metadata.name"),
    _field_env(POD_NAMESPACE_ENV, "metadata.namespace"),
]


def _training_pod(
    owner: Owner,
    rt: RuntimeSpec,
    settings: Settings,
    command: list[str],
    extra_env: list[dict[str, Any]] | None = None,
    **kw: Any,
) -> dict[str, Any]:
    env = [*(extra_env or []), *copy.deepcopy(POD_ENV)]
    return pod_template(
        owner, "train", rt, settings, command, env, service_account=WORKLOAD_SERVICE_ACCOUNT, **kw
    )


def workload_identity(namespace: str) -> list[Manifest]:
    """The ServiceAccount training pods run as, with a Role that lets it patch pods (rank 0's
    progress annotation; pod names are made by the Job controller, so no resourceNames) and
    the RoleBinding. One per namespace, shared by every training: owned by no custom resource."""
    meta = {
        "name": WORKLOAD_SERVICE_ACCOUNT,
        "namespace": namespace,
        "labels": {
            "app.kubernetes.io/name": "gen5nas",
            "app.kubernetes.io/managed-by": MANAGED_BY,
            LABEL_COMPONENT: "workload-identity",
        },
    }
    rbac = "rbac.authorization.k8s.io"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": copy.deepcopy(meta)},
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "Role",
            "metadata": copy.deepcopy(meta),
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]}],
        },
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "RoleBinding",
            "metadata": copy.deepcopy(meta),
            "roleRef": {"apiGroup": rbac, "kind": "Role", "name": WORKLOAD_SERVICE_ACCOUNT},
            "subjects": [
                {"kind": "ServiceAccount", "name": WORKLOAD_SERVICE_ACCOUNT, "namespace": namespace}
            ],
        },
    ]


def training_indexedjob(
    owner: Owner, spec: SupernetTrainingSpec, settings: Settings
) -> list[Manifest]:
    """An Indexed Job (one pod per node, pod 0 is the rendezvous master) + its headless
    Service, which gives every pod a stable DNS name ``<job>-<index>.<service>``."""
    rt = spec.runtime
    job_name = child_name(owner, "train")
    service_name = child_name(owner, "rdzv")
    master = f"{job_name}-0.{service_name}.{owner.namespace}.svc"
    torchrun = [
        "torchrun",
        f"--nnodes={rt.workers}",
        f"--nproc-per-node={_nproc(rt)}",
        "--node-rank=$(NODE_RANK)",
        f"--master-addr={master}",
        f"--master-port={settings.rendezvous_port}",
        "-m",
        "gen5nas",
        *train_args(owner, rt),
        *metrics_args(settings.workload_metrics_port),  # served by rank 0 (pod 0)
    ]
    env = [
        {
            "name": "NODE_RANK",
            "valueFrom": {
                "fieldRef": {
                    "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"
                }
            },
        }
    ]
    template = _training_pod(owner, rt, settings, torchrun, extra_env=env, subdomain=service_name)
    template["spec"]["containers"][0]["ports"] = [
        {"name": "rendezvous", "containerPort": settings.rendezvous_port}
    ]
    if rt.workers == 1:  # one template for every pod: offered to scrapers when pod 0 is all
        expose_metrics(template, settings.workload_metrics_port)
    job = job_manifest(
        owner,
        "train",
        "train",
        template,
        completionMode="Indexed",
        completions=rt.workers,
        parallelism=rt.workers,
        # A failed pod restarts the whole group; the CLI resumes from last_checkpoint.
        backoffLimit=3 * rt.workers,
    )
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, "rdzv", "train"),
        "spec": {
            "clusterIP": "None",
            # Rendezvous happens before any pod is Ready.
            "publishNotReadyAddresses": True,
            "selector": selector(owner, "train"),
            "ports": [{"name": "rendezvous", "port": settings.rendezvous_port}],
        },
    }
    return [job, service]


def training_pytorchjob(owner: Owner, spec: SupernetTrainingSpec, settings: Settings) -> Manifest:
    """A Kubeflow PyTorchJob: the training operator sets torchrun's PET_* variables (nodes,
    rank, master) and ``nprocPerNode`` gives the processes per pod."""
    rt = spec.runtime
    port = settings.workload_metrics_port
    command = ["torchrun", "-m", "gen5nas", *train_args(owner, rt), *metrics_args(port)]

    def replica(count: int, metrics_port: int = 0) -> dict[str, Any]:
        template = _training_pod(
            owner, rt, settings, command, container_name="pytorch", restart_policy="OnFailure"
        )
        expose_metrics(template, metrics_port)
        return {"replicas": count, "restartPolicy": "OnFailure", "template": template}

    replicas = {"Master": replica(1, port)}  # rank 0 (the one serving /metrics) is the master
    if rt.workers > 1:
        replicas["Worker"] = replica(rt.workers - 1)
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": metadata(owner, "train", "train"),
        "spec": {
            "nprocPerNode": str(_nproc(rt)),
            "runPolicy": {"backoffLimit": 3 * rt.workers, "cleanPodPolicy": "None"},
            "pytorchReplicaSpecs": replicas,
        },
    }


def training_children(
    owner: Owner,
    spec: SupernetTrainingSpec,
    raw_spec: dict[str, Any],
    settings: Settings,
    use_pytorchjob: bool,
) -> list[Manifest]:
    """Everything a SupernetTraining needs, ConfigMap first."""
    configmap = spec_configmap(owner, "train", effective_spec(raw_spec, {}))
    if use_pytorchjob:
        return [configmap, training_pytorchjob(owner, spec, settings)]
    return [configmap, *training_indexedjob(owner, spec, settings)]

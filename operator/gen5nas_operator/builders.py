"""Pure functions: a custom resource's spec -> the manifests of its children.

The contract with the workloads is the CLI: every child runs ``gen5nas <step> -f
/config/spec.yaml`` on a ConfigMap the operator writes from the CR (the same document a user
could run locally), plus flags for what only the cluster knows (work dir on the results PVC,
the checkpoint of a finished SupernetTraining, the study storage from a Secret). No function
here talks to the API server, so tests call them without a cluster.
"""

from __future__ import annotations

import copy
import hashlib
import shlex
from dataclasses import dataclass
from typing import Any

import yaml

from gen5nas.spec.common import GROUP_VERSION, RuntimeSpec
from gen5nas.spec.export import SubnetExportSpec
from gen5nas.spec.search import NASSearchSpec
from gen5nas.spec.training import SupernetTrainingSpec
from gen5nas.train.progress_report import POD_NAME_ENV, POD_NAMESPACE_ENV
from gen5nas_operator.settings import Settings

Manifest = dict[str, Any]

CONFIG_MOUNT = "/config"
SPEC_FILE = f"{CONFIG_MOUNT}/spec.yaml"
STORAGE_ENV = "GEN5NAS_STORAGE_URL"  # from the Secret; never written into a manifest
# The kubelet expands $(VAR) from the container's env: the pod spec holds only the reference.
STORAGE_ARG = f"--storage=$({STORAGE_ENV})"
GPU_RESOURCE = "nvidia.com/gpu"
MANAGED_BY = "gen5nas-operator"
LABEL_OWNER_UID = "gen5nas.io/owner-uid"
LABEL_OWNER_KIND = "gen5nas.io/owner-kind"
LABEL_COMPONENT = "app.kubernetes.io/component"
MAX_NAME = 52  # a Job's pods get a 63-char label from its name plus a suffix
# Training pods run as this ServiceAccount (unless spec.runtime.serviceAccountName names one):
# it may patch pods in its namespace, so rank 0 can write its progress annotation.
WORKLOAD_SERVICE_ACCOUNT = "gen5nas-workload"


@dataclass(frozen=True)
class Owner:
    """The custom resource a child belongs to."""

    kind: str
    name: str
    namespace: str
    uid: str

    @classmethod
    def from_body(cls, body: Any) -> Owner:
        meta = body["metadata"]
        return cls(body["kind"], meta["name"], meta["namespace"], meta["uid"])


# ---- naming, labels, ownership ---------------------------------------------------------------
def child_name(owner: Owner, role: str) -> str:
    """``<owner>-<role>``, shortened with a hash when too long for a DNS label."""
    name = f"{owner.name}-{role}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME - 9].rstrip('-.')}-{digest}"


def labels(owner: Owner, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "gen5nas",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/instance": owner.name[:63].rstrip("-."),
        LABEL_COMPONENT: component,
        LABEL_OWNER_KIND: owner.kind.lower(),
        LABEL_OWNER_UID: owner.uid,
    }


def selector(owner: Owner, component: str) -> dict[str, str]:
    return {LABEL_OWNER_UID: owner.uid, LABEL_COMPONENT: component}


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(owner: Owner, role: str, component: str) -> dict[str, Any]:
    return {
        "name": child_name(owner, role),
        "namespace": owner.namespace,
        "labels": labels(owner, component),
        "ownerReferences": [owner_reference(owner)],
    }


def work_dir(owner: Owner, runtime: RuntimeSpec) -> str:
    """This resource's directory on the results PVC: ``<mount>/<namespace>/<name>``."""
    return f"{runtime.results_mount_path.rstrip('/')}/{owner.namespace}/{owner.name}"


def training_checkpoint(owner: Owner, runtime: RuntimeSpec) -> str:
    """Where a SupernetTraining's result is read by later steps: its work dir (the CLIs
    resolve a directory to its best checkpoint, as ``--checkpoint`` documents)."""
    return work_dir(owner, runtime)


def study_name(owner: Owner, spec: NASSearchSpec) -> str:
    """The spec's ``studyName``, else one unique to this resource (a re-created NASSearch of
    the same name starts a fresh study rather than resuming a stranger's)."""
    return spec.study_name or f"{owner.namespace}.{owner.name}.{owner.uid[:8]}"


# ---- the spec the child reads ----------------------------------------------------------------
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


# ---- pods ------------------------------------------------------------------------------------
def _tolerations(runtime: RuntimeSpec) -> list[dict[str, Any]]:
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
        spec["tolerations"] = _tolerations(runtime)
    if runtime.service_account_name or service_account:
        spec["serviceAccountName"] = runtime.service_account_name or service_account
    if subdomain:
        spec["subdomain"] = subdomain
    return {"metadata": {"labels": labels(owner, component)}, "spec": spec}


def _job(
    owner: Owner, role: str, component: str, template: dict[str, Any], **job_spec: Any
) -> Manifest:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(owner, role, component),
        "spec": {**job_spec, "template": template},
    }


# ---- SupernetTraining --------------------------------------------------------------------------
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


def training_indexed_job(
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
    job = _job(
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
    command = ["torchrun", "-m", "gen5nas", *train_args(owner, rt)]

    def replica(count: int) -> dict[str, Any]:
        template = _training_pod(
            owner, rt, settings, command, container_name="pytorch", restart_policy="OnFailure"
        )
        return {"replicas": count, "restartPolicy": "OnFailure", "template": template}

    replicas = {"Master": replica(1)}
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
    return [configmap, *training_indexed_job(owner, spec, settings)]


# ---- NASSearch -----------------------------------------------------------------------------------
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
    command = ["gen5nas", "estimator", "serve", "--drain-delay", "5", "--port", *map(str, ports)]
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
    pod_spec: dict[str, Any] = {"containers": [container]}
    if spec.runtime.node_selector:
        pod_spec["nodeSelector"] = dict(spec.runtime.node_selector)
    if spec.runtime.tolerations:
        pod_spec["tolerations"] = _tolerations(spec.runtime)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(owner, "estimator", "estimator"),
        "spec": {
            "replicas": est.replicas,
            "selector": {"matchLabels": selector(owner, "estimator")},
            "template": {"metadata": {"labels": labels(owner, "estimator")}, "spec": pod_spec},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, "estimator", "estimator"),
        "spec": {
            "clusterIP": "None",
            "selector": selector(owner, "estimator"),
            "ports": [
                {"name": f"grpc-{i}", "port": p, "targetPort": p, "appProtocol": "grpc"}
                for i, p in enumerate(ports)
            ],
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
    out.append(search_job(owner, spec, settings, checkpoint, dsn_secret))
    return out


def search_job(
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
        "--checkpoint", checkpoint, STORAGE_ARG,
    ]  # fmt: skip
    template = pod_template(owner, "search", rt, settings, command, [_secret_env(dsn_secret)])
    return _job(
        owner, "search", "search", template, parallelism=spec.parallelism,
        backoffLimit=3 * spec.parallelism,
    )  # fmt: skip


# ---- SubnetExport --------------------------------------------------------------------------------
def export_children(
    owner: Owner,
    spec: SubnetExportSpec,
    raw_spec: dict[str, Any],
    settings: Settings,
    overrides: dict[str, Any],
    dsn_secret: tuple[str, str] | None = None,
) -> list[Manifest]:
    """ConfigMap + export Job. ``overrides`` carry what the operator resolved (the checkpoint,
    the named NASSearch's study); ``dsn_secret`` is given when the subnet is a study trial."""
    configmap = spec_configmap(owner, "export", effective_spec(raw_spec, overrides))
    return [configmap, export_job(owner, spec.runtime, settings, dsn_secret)]


def export_job(
    owner: Owner,
    runtime: RuntimeSpec,
    settings: Settings,
    dsn_secret: tuple[str, str] | None = None,
) -> Manifest:
    """One pod: cut the subnet out, (re)train if asked, write ONNX, check parity; then the
    ONNX card goes to the termination message, where the operator reads it."""
    wd = work_dir(owner, runtime)
    storage = f' --storage "${STORAGE_ENV}"' if dsn_secret else ""
    script = (
        f"gen5nas export -f {SPEC_FILE} --work-dir {shlex.quote(wd)}{storage}"
        f" && exec python -m gen5nas_operator.termination {shlex.quote(wd)}"
    )
    command = ["sh", "-c", script]
    env = [_secret_env(dsn_secret)] if dsn_secret else []
    template = pod_template(owner, "export", runtime, settings, command, env)
    return _job(owner, "export", "export", template, backoffLimit=2)


def _secret_env(dsn_secret: tuple[str, str]) -> dict[str, Any]:
    name, key = dsn_secret
    return {"name": STORAGE_ENV, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}


def shell(command: list[str]) -> str:
    """A command as one shell line (for logs and docs)."""
    return shlex.join(command)

"""What the operator's end-to-end tests share (not a test module): kubectl bound to a
namespace, the operator as a subprocess under its own ServiceAccount, a watch that records every
version of a kind, the custom resources the tests apply, and LocalPod, which runs a Job's pod
command here as the kubelet would. Fixtures built on these live in conftest.py."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
EXAMPLES = ROOT / "examples"
GROUP_KINDS = ("supernettraining", "nassearch", "subnetexport")


def wait_for(what: str, fn: Callable[[], Any], timeout: float = 60.0, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Cluster:
    """kubectl helpers bound to one namespace."""

    def __init__(self, kube: Any, namespace: str) -> None:
        self.kube = kube
        self.ns = namespace

    def kubectl(self, *args: str, input: str | None = None, check: bool = True):
        return self.kube.kubectl("-n", self.ns, *args, input=input, check=check)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        res = self.kubectl("get", kind, name, "-o", "json", check=False)
        return json.loads(res.stdout) if res.returncode == 0 else None

    def items(self, kind: str, selector: str) -> list[dict[str, Any]]:
        res = self.kubectl("get", kind, "-l", selector, "-o", "json")
        return json.loads(res.stdout)["items"]

    def apply(self, doc: dict[str, Any] | str, check: bool = True):
        text = doc if isinstance(doc, str) else yaml.safe_dump(doc)
        return self.kubectl("apply", "-f", "-", input=text, check=check)

    def status(self, kind: str, name: str) -> dict[str, Any]:
        return (self.get(kind, name) or {}).get("status") or {}

    def wait_phase(self, kind: str, name: str, phase: str, timeout: float = 60) -> dict:
        return wait_for(
            f"{kind}/{name} phase {phase}",
            lambda: (st := self.status(kind, name)).get("phase") == phase and st,
            timeout,
        )

    def patch_status(self, kind: str, name: str, status: dict[str, Any]) -> None:
        self.kubectl(
            "patch", kind, name, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}),
        )  # fmt: skip

    def job_running(self, name: str, active: int = 1) -> None:
        """Pods started: with a Job controller, mark its pods Ready (it derives the Job's
        counts from them); without one, write the counts on the Job directly."""
        if not self.kube.has_controller_manager:
            job = self.get("job", name) or {}
            start = (job.get("status") or {}).get("startTime") or now()
            self.patch_status("job", name, {"startTime": start, "active": active, "ready": active})
            return
        self.pods_ready(f"batch.kubernetes.io/job-name={name}", active)

    def pods_ready(self, selector: str, count: int) -> None:
        """As the kubelet reports started, ready containers on ``count`` pods matching."""
        pods = wait_for(
            f"{count} pods {selector}",
            lambda: len(p := self.items("pods", selector)) >= count and p,
        )
        for pod in pods:
            c = pod["spec"]["containers"][0]
            self.patch_status(
                "pod", pod["metadata"]["name"],
                {
                    "phase": "Running", "startTime": now(),
                    "conditions": [
                        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now()},
                        {"type": "Ready", "status": "True", "lastTransitionTime": now()},
                    ],
                    "containerStatuses": [
                        {"name": c["name"], "image": c["image"], "imageID": "", "ready": True,
                         "started": True, "restartCount": 0,
                         "state": {"running": {"startedAt": now()}}},
                    ],
                },
            )  # fmt: skip

    def pod_waiting(self, pod: dict[str, Any], scheduled: bool, reason: str, message: str) -> None:
        """As the scheduler (not scheduled: ``reason``) or the kubelet (a container waiting with
        ``reason``) report a pod that has not started."""
        c = pod["spec"]["containers"][0]
        cond: dict[str, Any] = {"type": "PodScheduled", "status": "True" if scheduled else "False",
                                "lastTransitionTime": now()}  # fmt: skip
        st: dict[str, Any] = {"phase": "Pending", "conditions": [cond]}
        if scheduled:
            st["containerStatuses"] = [
                {"name": c["name"], "image": c["image"], "imageID": "", "ready": False,
                 "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}}
            ]  # fmt: skip
        else:
            cond.update(reason=reason, message=message)
        self.patch_status("pod", pod["metadata"]["name"], st)

    def deployment_available(self, name: str, count: int) -> None:
        """``count`` ready pods behind a Deployment: through its ReplicaSet with a controller
        manager, else written on the Deployment directly."""
        if not self.kube.has_controller_manager:
            self.patch_status("deployment", name, {"replicas": count, "readyReplicas": count,
                                                   "availableReplicas": count})  # fmt: skip
            return
        dep = self.get("deployment", name) or {}
        labels = dep["spec"]["selector"]["matchLabels"]
        self.pods_ready(",".join(f"{k}={v}" for k, v in labels.items()), count)

    def job_complete(self, name: str, completions: int = 1, indexed: bool = False) -> None:
        job = self.get("job", name) or {}
        start = (job.get("status") or {}).get("startTime") or now()
        st: dict[str, Any] = {
            "startTime": start, "completionTime": now(), "active": 0, "ready": 0,
            "succeeded": completions, "terminating": 0,
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                 "message": "Reached expected number of succeeded pods",
                 "lastTransitionTime": now(), "lastProbeTime": now()},
                {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                 "message": "Reached expected number of succeeded pods",
                 "lastTransitionTime": now(), "lastProbeTime": now()},
            ],
        }  # fmt: skip
        if indexed:
            st["completedIndexes"] = "0" if completions == 1 else f"0-{completions - 1}"
        self.patch_status("job", name, st)

    def job_failed(self, name: str, message: str) -> None:
        job = self.get("job", name) or {}
        start = (job.get("status") or {}).get("startTime") or now()
        self.patch_status(
            "job", name,
            {
                "startTime": start, "active": 0, "ready": 0, "failed": 1, "terminating": 0,
                "conditions": [
                    {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
                     "message": message, "lastTransitionTime": now(), "lastProbeTime": now()},
                    {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                     "message": message, "lastTransitionTime": now(), "lastProbeTime": now()},
                ],
            },
        )  # fmt: skip


# The administrator's policy the shared e2e operator runs with: the operator's defaults (which
# the shipped examples meet) plus the GPU pool label, taint and dataset PVC that
# test_operator_e2e's training asks for.
E2E_POLICY: dict[str, Any] = {
    "allowedTolerations": [{"key": "nvidia.com/gpu"}, {"key": "gpu"}],
    "allowedNodeSelectors": {"nvidia.com/gpu.product": ["*"], "gpu": ["a100"]},
    "allowedPvcs": ["gen5nas-results", "gen5nas-datasets", "imagenet"],
    "allowedDsnSecrets": ["no-such"],  # the missing-Secret test names one the policy allows
}


def free_port() -> int:
    """A loopback port free now (the operator binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OperatorProcess:
    """`python -m gen5nas_operator` with a ServiceAccount's kubeconfig; restartable. ``policy``:
    the chart's ``policy`` values (None: the operator's defaults)."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        log: Path,
        policy: dict[str, Any] | None = E2E_POLICY,
    ) -> None:
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "GEN5NAS_NAMESPACES": namespace,
            "GEN5NAS_RECONCILE_INTERVAL_S": "1",
            "GEN5NAS_FRONT_TOP": "3",
            "GEN5NAS_METRICS_PORT": str(free_port()),
        }
        self.metrics_port = int(self.env["GEN5NAS_METRICS_PORT"])
        if policy is not None:
            self.env["GEN5NAS_POLICY"] = json.dumps(policy)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gen5nas_operator", "--liveness", ""],
            env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def table(text: str) -> list[dict[str, str]]:
    """``kubectl get`` output as rows of {COLUMN: cell}, cut at the header's column starts
    (an empty cell is blank, so splitting on whitespace would shift the rest)."""
    head, *lines = text.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", head)]
    names = head.split()
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return [
        {n: line[a:b].strip() for n, (a, b) in zip(names, bounds, strict=True)} for line in lines
    ]


def events(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    res = cluster.kubectl(
        "get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json"
    )
    return list(json.loads(res.stdout)["items"])


def event_reasons(cluster: Cluster, name: str) -> set[str]:
    return {e.get("reason") for e in events(cluster, name)}


ARGOCD_HEALTH = ROOT / "operator" / "argocd" / "health.lua"


def argocd_health(obj: dict[str, Any]) -> dict[str, str]:
    """operator/argocd/health.lua run as Argo CD runs a health check: Lua 5.1 (Argo CD's
    gopher-lua), the resource as the global table ``obj``; returns its {status, message}."""
    import lupa.lua51 as lua51

    lua = lua51.LuaRuntime(unpack_returned_tuples=True)

    def table(value: Any) -> Any:
        if isinstance(value, dict):
            return lua.table_from({k: table(v) for k, v in value.items()})
        if isinstance(value, list):
            return lua.table_from([table(v) for v in value])
        return value

    lua.globals().obj = table(obj)
    out = lua.execute(ARGOCD_HEALTH.read_text())
    return {"status": str(out["status"]), "message": str(out["message"])}


def capture(name: str, text: str) -> None:
    """Keep ``kubectl get`` output of a run for the docs: into $GEN5NAS_E2E_CAPTURE/<name>.txt
    when set (nothing otherwise)."""
    folder = os.environ.get("GEN5NAS_E2E_CAPTURE")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.txt").write_text(text)


class History:
    """Every version of one kind's objects in the namespace from now on, as the API server sends
    them: watches from a list's resourceVersion, each resuming where the last ended, so no
    version written after this call is missed (polling could step over a version that carried a
    finalizer for a moment)."""

    def __init__(self, cluster: Cluster, plural: str) -> None:
        from kubernetes import client, watch

        api = client.CustomObjectsApi(cluster.kube.api_client())
        args = ("gen5nas.io", "v1alpha1", cluster.ns, plural)
        since = api.list_namespaced_custom_object(*args)["metadata"]["resourceVersion"]
        self.cluster = cluster
        self.seen: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()

        def record() -> None:
            nonlocal since
            try:
                while not self._stop.is_set():  # short watches: stop() takes effect soon
                    stream = watch.Watch().stream(
                        api.list_namespaced_custom_object, *args, resource_version=since,
                        timeout_seconds=5,
                    )  # fmt: skip
                    for event in stream:
                        self.seen.append(event["object"])
                        since = event["object"]["metadata"]["resourceVersion"]
            except BaseException as exc:  # surfaced by versions()
                self.error = exc

        self._thread = threading.Thread(target=record, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def versions(self, kind: str, name: str) -> list[dict[str, Any]]:
        """All versions of ``name`` up to the one the API server holds now."""
        current = (self.cluster.get(kind, name) or {})["metadata"]["resourceVersion"]

        def caught_up() -> bool:
            if self.error is not None:
                raise AssertionError(f"the watch failed: {self.error!r}")
            return any(o["metadata"]["resourceVersion"] == current for o in list(self.seen))

        wait_for(f"the watch to reach {kind}/{name}@{current}", caught_up)
        return [o for o in list(self.seen) if o["metadata"]["name"] == name]


def finalizers(versions: list[dict[str, Any]]) -> set[str]:
    return {f for o in versions for f in o["metadata"].get("finalizers") or []}


def phases(versions: list[dict[str, Any]]) -> set[str]:
    return {(o.get("status") or {}).get("phase") for o in versions} - {None}


def service_account_kubeconfig(kube: Any, namespace: str, out: Path) -> Path:
    """The operator's own identity: a ServiceAccount bound to the shipped ClusterRole."""
    sa_ns = f"{namespace}-system"
    kube.kubectl("create", "namespace", sa_ns)
    docs = [
        d for d in yaml.safe_load_all((ROOT / "operator/rbac/clusterrole.yaml").read_text()) if d
    ]
    for doc in docs:
        doc["metadata"]["name"] = f"gen5nas-operator-{namespace}"
        if doc["kind"] == "ClusterRoleBinding":
            doc["roleRef"]["name"] = doc["metadata"]["name"]
            doc["subjects"][0]["namespace"] = sa_ns
    kube.kubectl("create", "serviceaccount", "gen5nas-operator", "-n", sa_ns)
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    token = kube.kubectl("create", "token", "gen5nas-operator", "-n", sa_ns,
                         "--duration=2h").stdout.strip()  # fmt: skip
    cfg = yaml.safe_load(kube.kubeconfig.read_text())
    cfg["users"] = [{"name": "operator", "user": {"token": token}}]
    cfg["contexts"][0]["context"]["user"] = "operator"
    out.write_text(yaml.safe_dump(cfg))
    return out


# ---- manifests -----------------------------------------------------------------------------
def training(name: str, **runtime: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gen5nas.io/v1alpha1",
        "kind": "SupernetTraining",
        "metadata": {"name": name},
        "spec": {
            "searchSpace": {"name": "mobilenetv2_tiny"},
            "dataset": {"kind": "digits"},
            "schedule": {"epochs": 2, "warmupEpochs": 1},  # the default warmup is 5 epochs
            "runtime": runtime,
        },
    }


def search(name: str, training_name: str, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gen5nas.io/v1alpha1",
        "kind": "NASSearch",
        "metadata": {"name": name},
        "spec": {
            "supernetTraining": training_name,
            "dataset": {"kind": "digits"},
            "maxTrials": 6,
            "parallelism": 2,
            "estimator": {"replicas": 2, "ports": [50051, 50052]},
            "runtime": {"gpusPerWorker": 1},
            **extra,
        },
    }


def export(name: str, search_name: str, trial: int) -> dict[str, Any]:
    return {
        "apiVersion": "gen5nas.io/v1alpha1",
        "kind": "SubnetExport",
        "metadata": {"name": name},
        "spec": {"nasSearch": search_name, "trial": trial, "runtime": {"gpusPerWorker": 0}},
    }


def owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    refs = obj["metadata"].get("ownerReferences") or []
    return any(r["uid"] == owner["metadata"]["uid"] and r.get("controller") for r in refs)


def contains(actual: Any, expected: Any, where: str = "spec") -> None:
    """Every value of ``expected`` is in ``actual`` (dicts compared key by key: the API server
    and the operator may add keys, but must not change or drop what the manifest says; an
    explicit null may be dropped, as the API server prunes nulls)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: {actual!r} is not a mapping"
        for key, value in expected.items():
            assert key in actual or value is None, f"{where}.{key} missing"
            contains(actual.get(key), value, f"{where}.{key}")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


# ---- playing the kubelet: a Job's pod run here -----------------------------------------------
def secret_value(cluster: Cluster, name: str, key: str) -> str:
    secret = cluster.get("secret", name)
    assert secret is not None, f"Secret {name} not found"
    return base64.b64decode(secret["data"][key]).decode()


def pod_names(cluster: Cluster, job: str, count: int) -> list[str]:
    """The Job's pods' names: the Job controller's when one runs, else names in its style."""
    if not cluster.kube.has_controller_manager:
        return [f"{job}-{secrets.token_hex(3)}" for _ in range(count)]
    pods = cluster.items("pods", f"batch.kubernetes.io/job-name={job}")
    assert len(pods) >= count, f"{len(pods)} pods of {job}, expected {count}"
    return sorted(p["metadata"]["name"] for p in pods)[:count]


_VAR_REF = re.compile(r"\$\$|\$\((\w+)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's ``$(VAR)`` expansion: defined variables replaced, others kept, ``$$`` is $."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR_REF.sub(one, text)


class LocalPod:
    """One pod of a Job run here as the kubelet would start it: the container's env resolved
    (``secretKeyRef`` read from its Secret), ``$(VAR)`` expanded, HOSTNAME the pod's name, the
    in-cluster KUBERNETES_SERVICE_* set; each volume a local directory (a PVC one per claim
    under ``root``, shared by the pods as a ReadWriteMany claim is; a ConfigMap's keys written
    as files; an emptyDir a fresh one). Only paths under a mount point are rewritten (to the
    local directory), and the image's ``gen5nas`` entry point runs as ``python -m gen5nas``."""

    def __init__(self, cluster: Cluster, job: dict[str, Any], name: str, root: Path) -> None:
        pod = job["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        server = urllib.parse.urlsplit(cluster.kube.server)
        self.name = name
        self.env = {
            "HOSTNAME": name,
            "KUBERNETES_SERVICE_HOST": server.hostname or "",
            "KUBERNETES_SERVICE_PORT": str(server.port or 443),
        }
        for var in container.get("env") or []:
            if "value" in var:
                self.env[var["name"]] = expand(var["value"], self.env)
                continue
            ref = (var.get("valueFrom") or {}).get("secretKeyRef")
            assert ref, f"env {var['name']}: only value and secretKeyRef are played here: {var}"
            self.env[var["name"]] = secret_value(cluster, ref["name"], ref["key"])
        volumes = {v["name"]: v for v in pod["volumes"]}
        self.mounts: dict[str, Path] = {}
        for mount in container.get("volumeMounts") or []:
            volume = volumes[mount["name"]]
            if "persistentVolumeClaim" in volume:
                local = root / "pvc" / volume["persistentVolumeClaim"]["claimName"]
            else:
                local = root / name / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            if "configMap" in volume:
                cm = cluster.get("configmap", volume["configMap"]["name"])
                assert cm is not None, f"ConfigMap {volume['configMap']['name']} not found"
                for key, text in cm["data"].items():
                    (local / key).write_text(text)
            self.mounts[mount["mountPath"].rstrip("/")] = local
        words = [expand(w, self.env) for w in [*container["command"], *container.get("args", [])]]
        if words[0] == "gen5nas":
            words[:1] = [sys.executable, "-m", "gen5nas"]
        if "--metrics-port" in words:  # each pod has its own network; here they share one
            words[words.index("--metrics-port") + 1] = "0"
        self.command = [self._local_arg(w) for w in words]

    def local(self, path: str) -> Path:
        """Where a path inside the pod is here (it must lie under a mount)."""
        for mount in sorted(self.mounts, key=len, reverse=True):
            if path == mount or path.startswith(mount + "/"):
                return self.mounts[mount] / path[len(mount) :].lstrip("/")
        raise AssertionError(f"{path} is under no volume mount of pod {self.name}")

    def _local_arg(self, word: str) -> str:
        flag, eq, value = word.partition("=") if word.startswith("--") else ("", "", word)
        if value.startswith("/") and any(
            value == m or value.startswith(m + "/") for m in self.mounts
        ):
            value = str(self.local(value))
        return f"{flag}{eq}{value}"

    def start(self, log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen(
                self.command, env={**os.environ, **self.env}, stdout=out,
                stderr=subprocess.STDOUT, cwd=log.parent,
            )  # fmt: skip


def grpc_probe_ok(port: int, service: str = "") -> bool:
    """The kubelet's gRPC probe: grpc.health.v1 Check answers SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


# ---- tests ---------------------------------------------------------------------------------
def rank0_pod(cluster: Cluster, job_name: str) -> dict[str, Any]:
    """The Job's index-0 pod: the Job controller's, else one made from the Job's template (the
    test plays the controller too)."""
    selector = f"batch.kubernetes.io/job-name={job_name},batch.kubernetes.io/job-completion-index=0"
    if not cluster.kube.has_controller_manager:
        template = (cluster.get("job", job_name) or {})["spec"]["template"]
        labels = {**template["metadata"]["labels"], "batch.kubernetes.io/job-name": job_name,
                  "batch.kubernetes.io/job-completion-index": "0"}  # fmt: skip
        cluster.apply({"apiVersion": "v1", "kind": "Pod", "spec": template["spec"],
                       "metadata": {"name": f"{job_name}-0-test", "labels": labels}})  # fmt: skip
    return wait_for(f"pod 0 of {job_name}", lambda: (p := cluster.items("pods", selector)) and p[0])


def report_as_rank0(cluster: Cluster, pod: dict[str, Any], work: Path, **progress: Any) -> None:
    """What rank 0 does in that pod: the real reporter, with the pod's downward-API names and
    a token of the pod's ServiceAccount (so the operator-made Role is what allows the patch)."""
    from urllib.parse import urlsplit

    from gen5nas.train.progress_report import ProgressReporter

    account = pod["spec"]["serviceAccountName"]
    token = wait_for(
        f"ServiceAccount {account}",
        lambda: (r := cluster.kubectl("create", "token", account, check=False)).returncode == 0
        and r.stdout.strip(),
    )  # fmt: skip
    work.mkdir(parents=True, exist_ok=True)
    (work / "token").write_text(token)
    (work / "ca.crt").write_bytes(cluster.kube.ca_file.read_bytes())
    server = urlsplit(cluster.kube.server)
    reporter = ProgressReporter.from_env({
        "GEN5NAS_POD_NAME": pod["metadata"]["name"], "GEN5NAS_POD_NAMESPACE": cluster.ns,
        "KUBERNETES_SERVICE_HOST": str(server.hostname),
        "KUBERNETES_SERVICE_PORT": str(server.port), "GEN5NAS_SERVICEACCOUNT_DIR": str(work),
    })  # fmt: skip
    assert reporter is not None and reporter.report(**progress, force=True)

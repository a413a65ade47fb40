"""The operator against a real kube-apiserver (+ kube-controller-manager when built) and a real
PostgreSQL. Nothing runs pods, so the tests play the kubelet: they patch child Job (and pod)
status and check the custom resources follow. The operator runs as a subprocess under its own
ServiceAccount token bound to operator/rbac/clusterrole.yaml, so RBAC is exercised too."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_kit import outputs_attr, write_study

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[1]
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
        pods = wait_for(
            f"{active} pods of {name}",
            lambda: (
                len(p := self.items("pods", f"batch.kubernetes.io/job-name={name}")) >= active and p
            ),
        )
        for pod in pods:
            c = pod["spec"]["containers"][0]
            self.patch_status(
                "pod", pod["metadata"]["name"],
                {
                    "phase": "Running", "startTime": now(),
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now()}],
                    "containerStatuses": [
                        {"name": c["name"], "image": c["image"], "imageID": "", "ready": True,
                         "started": True, "restartCount": 0,
                         "state": {"running": {"startedAt": now()}}},
                    ],
                },
            )  # fmt: skip

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


class OperatorProcess:
    """`python -m gen5nas_operator` with a ServiceAccount's kubeconfig; restartable."""

    def __init__(self, kubeconfig: Path, namespace: str, log: Path) -> None:
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "GEN5NAS_NAMESPACES": namespace,
            "GEN5NAS_RECONCILE_INTERVAL_S": "1",
            "GEN5NAS_FRONT_TOP": "3",
        }
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


def event_reasons(cluster: Cluster, name: str) -> set[str]:
    res = cluster.kubectl(
        "get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json"
    )
    return {e.get("reason") for e in json.loads(res.stdout)["items"]}


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


# ---- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crds(kube_cluster: Any) -> Any:
    kube_cluster.kubectl("apply", "--server-side", "-f", str(CRDS))
    kube_cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    return kube_cluster


@pytest.fixture(scope="module")
def namespace(crds: Any) -> str:
    ns = f"e2e-{secrets.token_hex(3)}"
    crds.kubectl("create", "namespace", ns)
    return ns


@pytest.fixture(scope="module")
def cluster(crds: Any, namespace: str) -> Cluster:
    return Cluster(crds, namespace)


def _service_account_kubeconfig(kube: Any, namespace: str, out: Path) -> Path:
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


@pytest.fixture(scope="module")
def operator(crds: Any, namespace: str, tmp_path_factory: Any) -> Iterator[OperatorProcess]:
    work = tmp_path_factory.mktemp("operator")
    kubeconfig = _service_account_kubeconfig(crds, namespace, work / "kubeconfig")
    op = OperatorProcess(kubeconfig, namespace, work / "operator.log")
    op.start()
    try:
        yield op
    finally:
        op.stop()
        print(op.text()[-5000:])


@pytest.fixture
def history(cluster: Cluster) -> Iterator[Callable[[str], History]]:
    """``history(plural)``: a History of that kind, stopped when the test ends."""
    made: list[History] = []

    def make(plural: str) -> History:
        made.append(History(cluster, plural))
        return made[-1]

    yield make
    for h in made:
        h.stop()


@pytest.fixture(scope="module")
def dsn(postgres_server: Any, cluster: Cluster) -> str:
    url = postgres_server.new_database("operator")
    cluster.kubectl("create", "secret", "generic", "gen5nas-postgres", f"--from-literal=dsn={url}")
    return url


# ---- manifests -----------------------------------------------------------------------------
def training(name: str, **runtime: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gen5nas.io/v1alpha1",
        "kind": "SupernetTraining",
        "metadata": {"name": name},
        "spec": {
            "searchSpace": {"name": "mobilenetv2_tiny"},
            "dataset": {"kind": "digits"},
            "schedule": {"epochs": 2},
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


def _owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    refs = obj["metadata"].get("ownerReferences") or []
    return any(r["uid"] == owner["metadata"]["uid"] and r.get("controller") for r in refs)


# ---- tests ---------------------------------------------------------------------------------
def test_training_children_status_and_restart(
    cluster: Cluster, operator: OperatorProcess, history: Callable[[str], History]
) -> None:
    trainings = history("supernettrainings")
    cluster.apply(
        training(
            "st-a",
            workers=2,
            gpusPerWorker=4,
            nodeSelector={"gpu": "a100"},
            tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
            datasetPvc="imagenet",
        )
    )
    cr = cluster.get("supernettraining", "st-a")
    assert cr is not None
    job = wait_for("train Job", lambda: cluster.get("job", "st-a-train"))
    assert _owned_by(job, cr)
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == 2
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert pod["nodeSelector"] == {"gpu": "a100"}
    assert pod["tolerations"][0]["key"] == "gpu"
    assert pod["subdomain"] == "st-a-rdzv"
    assert "--nnodes=2" in container["command"] and "--nproc-per-node=4" in container["command"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["dataset"]["persistentVolumeClaim"] == {
        "claimName": "imagenet",
        "readOnly": True,
    }
    assert volumes["results"]["persistentVolumeClaim"]["claimName"] == "gen5nas-results"
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert {e["name"] for e in container["env"]} >= {"NODE_RANK", "GEN5NAS_NAMESPACE"}
    svc = cluster.get("service", "st-a-rdzv")
    assert svc is not None and svc["spec"]["clusterIP"] == "None" and _owned_by(svc, cr)
    cm = cluster.get("configmap", "st-a-spec")
    assert cm is not None and _owned_by(cm, cr)
    document = yaml.safe_load(cm["data"]["spec.yaml"])
    assert document["kind"] == "SupernetTraining"
    assert document["spec"]["searchSpace"] == {"name": "mobilenetv2_tiny"}
    st = cluster.wait_phase("supernettraining", "st-a", "Pending")
    assert st["backend"] == "IndexedJob" and st["checkpoint"].endswith(f"/{cluster.ns}/st-a")

    cluster.job_running("st-a-train", active=2)
    st = cluster.wait_phase("supernettraining", "st-a", "Running")
    ready_since = {c["type"]: c for c in st["conditions"]}["Ready"]["lastTransitionTime"]

    # Restart mid-way, the Job finishing while no operator runs: reaching Succeeded proves the
    # new process reconciled, and it made no duplicate children on the way.
    operator.stop()
    cluster.job_complete("st-a-train", completions=2, indexed=True)
    operator.start()
    st = cluster.wait_phase("supernettraining", "st-a", "Succeeded")
    selector = f"gen5nas.io/owner-uid={cr['metadata']['uid']}"
    assert [j["metadata"]["name"] for j in cluster.items("jobs", selector)] == ["st-a-train"]
    assert len(cluster.items("configmaps", selector)) == 1
    assert len(cluster.items("services", selector)) == 1
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Complete"]["status"] == "True" and conds["Failed"]["status"] == "False"
    assert conds["Ready"]["status"] == "True"
    assert conds["Ready"]["lastTransitionTime"] == ready_since  # Ready never flipped

    # Events (core/v1, posted by the operator itself): children created, and phase changes from
    # both operator processes.
    wanted = {"Created", "Pending", "Running", "Succeeded"}
    wait_for(f"events {wanted} on st-a", lambda: wanted <= event_reasons(cluster, "st-a"))

    # No finalizer on any version, active or settled (no kopf timer holds one; the resync loop
    # is the operator's own), so deleting never waits for the operator.
    versions = trainings.versions("supernettraining", "st-a")
    assert {"Pending", "Running", "Succeeded"} <= phases(versions)
    assert finalizers(versions) == set()


def test_search_waits_runs_reports_front_and_cleans_up(
    cluster: Cluster, operator: OperatorProcess, dsn: str, history: Callable[[str], History]
) -> None:
    searches = history("nassearches")
    cluster.apply(training("st-b", gpusPerWorker=1))
    cluster.apply(search("nas-b", "st-b"))
    st = cluster.wait_phase("nassearch", "nas-b", "Waiting")
    assert "st-b" in st["message"]
    assert cluster.get("job", "nas-b-search") is None

    wait_for("train job", lambda: cluster.get("job", "st-b-train"))
    cluster.job_complete("st-b-train", indexed=True)
    cluster.wait_phase("supernettraining", "st-b", "Succeeded")

    cr = cluster.get("nassearch", "nas-b")
    job = wait_for("search Job", lambda: cluster.get("job", "nas-b-search"))
    assert _owned_by(job, cr) and job["spec"]["parallelism"] == 2
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["GEN5NAS_STORAGE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "gen5nas-postgres", "key": "dsn",
    }  # fmt: skip
    assert "--storage=$(GEN5NAS_STORAGE_URL)" in container["command"]
    ckpt = container["command"][container["command"].index("--checkpoint") + 1]
    assert ckpt.endswith(f"/{cluster.ns}/st-b")
    dep = cluster.get("deployment", "nas-b-estimator")
    assert dep is not None and _owned_by(dep, cr) and dep["spec"]["replicas"] == 2
    est = dep["spec"]["template"]["spec"]["containers"][0]
    assert est["readinessProbe"]["grpc"]["port"] == 50051
    assert est["livenessProbe"]["grpc"]["port"] == 50051
    assert est["command"][-3:] == ["--port", "50051", "50052"]
    svc = cluster.get("service", "nas-b-estimator")
    assert svc is not None and svc["spec"]["clusterIP"] == "None"
    spec_doc = yaml.safe_load(cluster.get("configmap", "nas-b-spec")["data"]["spec.yaml"])
    assert spec_doc["spec"]["estimator"]["servers"][0]["host"].startswith("nas-b-estimator.")
    assert "url" not in spec_doc["spec"].get("storage", {})

    cluster.job_running("nas-b-search", active=2)
    st = cluster.wait_phase("nassearch", "nas-b", "Running")
    study = st["studyName"]
    assert study.startswith(f"{cluster.ns}.nas-b.")
    archs = write_study(dsn, study, 4)
    st = wait_for(
        "trial counts", lambda: (x := cluster.status("nassearch", "nas-b")).get("trials", {})
        .get("complete") == 4 and x,
    )  # fmt: skip
    assert st["progress"] == "4/6"
    front = st["front"]
    assert front["size"] == 3 and [e["trial"] for e in front["top"]] == [0, 1, 3]
    assert front["bestAccuracy"] == 65.0 and front["lowestCost"] == 1.0
    assert [e["arch"] for e in front["top"]] == [archs[i].summary() for i in (0, 1, 3)]
    row = cluster.kubectl("get", "nassearch", "nas-b", "--no-headers").stdout.split()
    # NAME, Phase, Trials, Front, Best-Acc, Min-Cost, Age
    assert row[:6] == ["nas-b", "Running", "4/6", "3", "65", "1"], row
    assert len(row) == 7 and row[6][-1] in "smhd", row
    write_study(dsn, study, 0, work_dir=st["workDir"])  # the search step's last act
    cluster.job_complete("nas-b-search", completions=1)
    st = cluster.wait_phase("nassearch", "nas-b", "Succeeded")
    assert st["outputs"] == outputs_attr(st["workDir"])
    assert st["outputs"]["paretoHtml"].endswith(f"/{cluster.ns}/nas-b/pareto_front.html")
    wait_for("estimator removed", lambda: cluster.get("deployment", "nas-b-estimator") is None)
    assert cluster.get("service", "nas-b-estimator") is None
    assert cluster.status("nassearch", "nas-b")["estimator"]["removed"] is True
    # No deleteStudyOnDelete: no finalizer on any version, Waiting, Running (its trial counts
    # moved by the resync loop alone: no event touches the CR), Succeeded or after.
    versions = searches.versions("nassearch", "nas-b")
    assert {"Waiting", "Pending", "Running", "Succeeded"} <= phases(versions)
    assert any((o.get("status") or {}).get("progress") == "4/6" for o in versions)
    assert finalizers(versions) == set()

    # the DSN appears nowhere the operator writes
    password = dsn.split(":")[2].split("@")[0]
    everything = cluster.kubectl("get", "nassearch,configmap,events", "-o", "yaml").stdout
    assert password not in everything and password not in operator.text()

    # an export waits for its search, then runs with the study and reports the ONNX card
    cluster.apply(export("sx-b", "nas-b", 1))
    ejob = wait_for("export Job", lambda: cluster.get("job", "sx-b-export"))
    econtainer = ejob["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in str(econtainer["resources"])
    edoc = yaml.safe_load(cluster.get("configmap", "sx-b-spec")["data"]["spec.yaml"])
    assert edoc["spec"]["studyName"] == study and edoc["spec"]["trial"] == 1
    assert edoc["spec"]["checkpoint"].endswith(f"/{cluster.ns}/st-b")
    listing = wait_for(
        "kubectl get gen5nas", lambda: (r := cluster.kubectl("get", "gen5nas", check=False))
        .returncode == 0 and r.stdout,
    )  # fmt: skip
    for name in ("st-b", "nas-b", "sx-b"):
        assert name in listing
    cluster.job_failed("sx-b-export", "parity check failed")
    st = cluster.wait_phase("subnetexport", "sx-b", "Failed")
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Failed"]["status"] == "True" and "parity" in conds["Failed"]["message"]


def test_invalid_spec_past_the_schema_gets_a_condition_and_no_children(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    doc = training("st-bad")
    doc["spec"]["searchSpace"] = {"name": "no_such_space"}
    cluster.apply(doc)
    st = cluster.wait_phase("supernettraining", "st-bad", "Failed")
    ready = {c["type"]: c for c in st["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
    assert "no_such_space" in ready["message"] and "mobilenetv2_tiny" in ready["message"]
    cr = cluster.get("supernettraining", "st-bad")
    assert cluster.items("jobs,configmaps", f"gen5nas.io/owner-uid={cr['metadata']['uid']}") == []


def test_delete_removes_children_and_the_study_when_asked(
    cluster: Cluster, operator: OperatorProcess, dsn: str
) -> None:
    import optuna

    doc = search("nas-d", "unused", checkpoint="/results/x/st", deleteStudyOnDelete=True)
    del doc["spec"]["supernetTraining"]
    cluster.apply(doc)
    job = wait_for("search Job", lambda: cluster.get("job", "nas-d-search"))
    cr = cluster.get("nassearch", "nas-d")
    assert cr["metadata"].get("finalizers") == ["gen5nas.io/cleanup-study"]  # that one alone
    study = wait_for("study name", lambda: cluster.status("nassearch", "nas-d").get("studyName"))
    write_study(dsn, study, 1)
    assert study in optuna.study.get_all_study_names(dsn)
    cluster.kubectl("delete", "nassearch", "nas-d", "--wait=true", "--timeout=60s")
    assert study not in optuna.study.get_all_study_names(dsn)
    if cluster.kube.has_controller_manager:  # the garbage collector removes the children
        wait_for("children gone", lambda: cluster.get("job", "nas-d-search") is None, 60)
        wait_for("deployment gone", lambda: cluster.get("deployment", "nas-d-estimator") is None)
    else:
        assert _owned_by(job, cr)


def test_deleting_an_active_resource_needs_no_running_operator(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    cluster.apply(training("st-del", gpusPerWorker=1))
    wait_for("train Job", lambda: cluster.get("job", "st-del-train"))
    cluster.job_running("st-del-train")
    cluster.wait_phase("supernettraining", "st-del", "Running")
    operator.stop()
    try:
        res = cluster.kubectl(
            "delete", "supernettraining", "st-del", "--wait=true", "--timeout=30s", check=False
        )
        assert res.returncode == 0, res.stderr
        assert cluster.get("supernettraining", "st-del") is None
    finally:
        operator.start()


# ---- the API server rejects bad manifests --------------------------------------------------
INVALID = [
    ("SupernetTraining", "missing required", lambda s: s.pop("dataset"), "dataset: Required"),
    ("SupernetTraining", "bad enum", lambda s: s.update(task="segmentation"), "supported values"),
    ("SupernetTraining", "range", lambda s: s["runtime"].update(workers=0), "should be greater than or equal to 1"),
    ("NASSearch", "missing required", lambda s: s.pop("dataset"), "dataset: Required"),
    ("NASSearch", "bad enum", lambda s: s.update(costKey="speed"), "supported values"),
    ("NASSearch", "range", lambda s: s.update(maxTrials=0), "should be greater than or equal to 1"),
    ("SubnetExport", "missing required", lambda s: s.update(arch={"resolution": [32, 32]}), "stages: Required"),
    ("SubnetExport", "bad enum", lambda s: s.update(dataset={"kind": "mnist"}), "supported values"),
    ("SubnetExport", "range", lambda s: s.update(opset=11), "should be greater than or equal to 17"),
]  # fmt: skip


def _valid(kind: str, name: str) -> dict[str, Any]:
    if kind == "SupernetTraining":
        return training(name, workers=1)
    if kind == "NASSearch":
        return search(name, "st-x")
    return export(name, "nas-x", 0)


@pytest.mark.parametrize(
    ("kind", "case", "mutate", "expect"), INVALID, ids=[f"{k}-{c}" for k, c, *_ in INVALID]
)
def test_api_server_rejects_invalid_manifests(
    crds: Any, kind: str, case: str, mutate: Callable[[dict], Any], expect: str
) -> None:
    doc = _valid(kind, "bad")
    mutate(doc["spec"])
    res = crds.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(doc), check=False
    )
    assert res.returncode != 0, f"{kind} ({case}) was accepted"
    assert expect in res.stderr, res.stderr


IMMUTABLE = [
    ("SupernetTraining", lambda s: s.update(searchSpace={"name": "mobilenetv2_sample1"}), "spec.searchSpace is immutable"),
    ("NASSearch", lambda s: s.update(costKey="energy"), "spec.costKey is immutable"),
    ("NASSearch", lambda s: s.update(checkpoint="/elsewhere"), "spec.checkpoint is immutable"),
    ("NASSearch", lambda s: s.update(searchSpace={"name": "mobilenetv2_tiny"}), "spec.searchSpace is immutable"),
    ("SubnetExport", lambda s: s.update(trial=5), "spec.trial is immutable"),
    ("SubnetExport", lambda s: s.update(profile="cpu-ort"), "spec.profile is immutable"),
    ("SubnetExport", lambda s: s.update(hwConfig={"freq_mhz": 800.0}), "spec.hwConfig is immutable"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "mutate", "expect"), IMMUTABLE, ids=[e for *_, e in IMMUTABLE])
def test_api_server_rejects_changes_to_immutable_fields(
    crds: Any, kind: str, mutate: Callable[[dict], Any], expect: str
) -> None:
    ns = "immutable-" + secrets.token_hex(3)  # not watched: only the API server is under test
    crds.kubectl("create", "namespace", ns)
    doc = _valid(kind, "imm")
    crds.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(doc))
    mutate(doc["spec"])
    res = crds.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(doc), check=False)
    assert res.returncode != 0 and expect in res.stderr, res.stderr
    mutable = _valid(kind, "imm")
    mutable["spec"]["runtime"] = {"gpusPerWorker": 3}  # runtime is not immutable
    crds.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(mutable))


def test_examples_pass_the_crd_schema(crds: Any) -> None:
    files = sorted(EXAMPLES.glob("*.yaml")) if EXAMPLES.exists() else []
    docs = [
        d for f in files for d in yaml.safe_load_all(f.read_text())
        if isinstance(d, dict) and d.get("apiVersion", "").startswith("gen5nas.io/")
    ]  # fmt: skip
    if not docs:
        pytest.skip("no gen5nas manifests in examples/ yet")
    for doc in docs:
        ns = doc["metadata"].get("namespace", "default")
        crds.kubectl("create", "namespace", ns, check=False)  # may exist already
        res = crds.kubectl(
            "apply", "--dry-run=server", "-n", ns, "-f", "-", input=yaml.safe_dump(doc),
            check=False,
        )  # fmt: skip
        assert res.returncode == 0, f"{doc['kind']} {doc['metadata'].get('name')}: {res.stderr}"

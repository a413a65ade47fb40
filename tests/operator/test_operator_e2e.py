"""The operator against a real kube-apiserver (+ kube-controller-manager when built) and a real
PostgreSQL. Nothing runs pods, so the tests play the kubelet: they patch child Job (and pod)
status and check the custom resources follow; the search Job's pods are run for real, here
(LocalPod: the Job's own command, env and volumes). The operator runs as a subprocess under its
own ServiceAccount token bound to operator/rbac/clusterrole.yaml, so RBAC is exercised too."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.operator_e2e import (
    EXAMPLES,
    Cluster,
    History,
    LocalPod,
    OperatorProcess,
    argocd_health,
    capture,
    contains,
    event_reasons,
    events,
    export,
    finalizers,
    grpc_probe_ok,
    owned_by,
    phases,
    pod_names,
    rank0_pod,
    report_as_rank0,
    search,
    table,
    training,
    wait_for,
)
from support.operator_study import write_study

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def test_training_children_status_and_restart(
    cluster: Cluster,
    operator: OperatorProcess,
    history: Callable[[str], History],
    tmp_path: Path,
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
    assert owned_by(job, cr)
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
    assert {e["name"] for e in container["env"]} >= {
        "NODE_RANK", "GEN5NAS_NAMESPACE", "GEN5NAS_POD_NAME", "GEN5NAS_POD_NAMESPACE",
    }  # fmt: skip
    assert pod["serviceAccountName"] == "gen5nas-workload"
    svc = cluster.get("service", "st-a-rdzv")
    assert svc is not None and svc["spec"]["clusterIP"] == "None" and owned_by(svc, cr)
    cm = cluster.get("configmap", "st-a-spec")
    assert cm is not None and owned_by(cm, cr)
    document = yaml.safe_load(cm["data"]["spec.yaml"])
    assert document["kind"] == "SupernetTraining"
    assert document["spec"]["searchSpace"] == {"name": "mobilenetv2_tiny"}
    st = cluster.wait_phase("supernettraining", "st-a", "Pending")
    assert st["backend"] == "IndexedJob" and st["checkpoint"].endswith(f"/{cluster.ns}/st-a")

    cluster.job_running("st-a-train", active=2)
    st = cluster.wait_phase("supernettraining", "st-a", "Running")
    ready_since = {c["type"]: c for c in st["conditions"]}["Ready"]["lastTransitionTime"]

    # Rank 0 reports its progress on its pod; the operator shows it in status and kubectl get.
    report_as_rank0(
        cluster, rank0_pod(cluster, "st-a-train"), tmp_path / "sa",
        epoch=1, epochs=2, iteration=40, max_score=71.254, min_score=60.5, metric="accuracy/top1",
    )  # fmt: skip
    progress = wait_for(
        "status.progress", lambda: cluster.status("supernettraining", "st-a").get("progress")
    )
    assert {k: v for k, v in progress.items() if k != "updated"} == {
        "epoch": 1, "epochs": 2, "iteration": 40, "metric": "accuracy/top1", "maxScore": 71.25,
        "minScore": 60.5,
    }  # fmt: skip
    row = cluster.kubectl("get", "supernettraining", "st-a", "--no-headers").stdout.split()
    # NAME, Phase, Ready, Epoch, Epochs, Metric, Max-Score, Min-Score, Age
    assert row[:8] == ["st-a", "Running", "True", "1", "2", "accuracy/top1", "71.25", "60.5"], row
    assert len(row) == 9 and row[8][-1] in "smhd", row
    (cells,) = table(cluster.kubectl("get", "supernettraining", "st-a", "-o", "wide").stdout)
    assert (cells["WORKERS"], cells["GPUS"]) == ("2", "4"), cells

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


@pytest.mark.slow  # a real search: two search pods' command, 6 trials on CPU
def test_search_waits_runs_reports_front_and_cleans_up(
    cluster: Cluster,
    operator: OperatorProcess,
    dsn: str,
    history: Callable[[str], History],
    tmp_path: Path,
) -> None:
    import optuna
    from optuna.trial import TrialState
    from support.search import fresh_checkpoint, read_csv

    from gen5nas.estimator.server import start_server
    from gen5nas.search.results import counted_trials
    from gen5nas.train.checkpoint import BEST_PREFIX

    searches = history("nassearches")
    cluster.apply(training("st-b", gpusPerWorker=1))
    # Small evaluation settings: the search pods run for real below.
    evaluation = {"calibBatches": 2, "valBatches": 2}
    cluster.apply(
        search("nas-b", "st-b", dataset={"kind": "digits", "numWorkers": 0}, evaluation=evaluation)
    )
    st = cluster.wait_phase("nassearch", "nas-b", "Waiting")
    assert "st-b" in st["message"]
    assert cluster.get("job", "nas-b-search") is None

    wait_for("train job", lambda: cluster.get("job", "st-b-train"))
    cluster.job_complete("st-b-train", indexed=True)
    cluster.wait_phase("supernettraining", "st-b", "Succeeded")

    cr = cluster.get("nassearch", "nas-b")
    job = wait_for("search Job", lambda: cluster.get("job", "nas-b-search"))
    assert owned_by(job, cr) and job["spec"]["parallelism"] == 2
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["GEN5NAS_STORAGE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "gen5nas-postgres", "key": "dsn",
    }  # fmt: skip
    assert "--storage=$(GEN5NAS_STORAGE_URL)" in container["command"]
    ckpt = container["command"][container["command"].index("--checkpoint") + 1]
    assert ckpt.endswith(f"/{cluster.ns}/st-b")
    dep = cluster.get("deployment", "nas-b-estimator")
    assert dep is not None and owned_by(dep, cr) and dep["spec"]["replicas"] == 2
    est = dep["spec"]["template"]["spec"]["containers"][0]
    assert est["readinessProbe"]["grpc"]["port"] == 50051
    assert est["livenessProbe"]["grpc"]["port"] == 50051
    assert est["command"][-5:] == ["--port", "50051", "50052", "--metrics-port", "9464"]
    svc = cluster.get("service", "nas-b-estimator")
    assert svc is not None and svc["spec"]["clusterIP"] == "None"
    spec_doc = yaml.safe_load(cluster.get("configmap", "nas-b-spec")["data"]["spec.yaml"])
    assert spec_doc["spec"]["estimator"]["servers"][0]["host"].startswith("nas-b-estimator.")
    assert "url" not in spec_doc["spec"].get("storage", {})

    cluster.job_running("nas-b-search", active=2)
    st = cluster.wait_phase("nassearch", "nas-b", "Running")
    study = st["studyName"]
    assert study.startswith(f"{cluster.ns}.nas-b.")

    # Play the kubelet for real: each of the Job's pods runs the Job's own command here, on the
    # PostgreSQL study its Secret names. Only what exists in a pod alone is stood in for: the
    # volumes (local dirs), the training's result on the results PVC (a fresh tiny supernet),
    # and the estimator Deployment's pods (an estimator server on loopback).
    pods = [
        LocalPod(cluster, job, name, tmp_path)
        for name in pod_names(cluster, job["metadata"]["name"], 2)
    ]
    assert all(p.env["GEN5NAS_STORAGE_URL"] == dsn for p in pods)
    fresh_checkpoint(pods[0].local(ckpt) / f"{BEST_PREFIX}1.pth")
    ports = [p["containerPort"] for p in est["ports"] if p["name"] != "metrics"]
    server = start_server([0] * len(ports), host="127.0.0.1")
    logs = [tmp_path / f"{p.name}.log" for p in pods]
    try:
        assert grpc_probe_ok(server.ports[ports.index(est["readinessProbe"]["grpc"]["port"])])
        for pod in pods:
            spec_file = Path(pod.command[pod.command.index("-f") + 1])  # on its ConfigMap
            doc = yaml.safe_load(spec_file.read_text())
            assert doc["spec"]["estimator"]["servers"][0]["ports"] == ports
            doc["spec"]["estimator"]["servers"] = [{"host": "127.0.0.1", "ports": server.ports}]
            spec_file.write_text(yaml.safe_dump(doc, sort_keys=False))
        procs = [pod.start(log) for pod, log in zip(pods, logs, strict=True)]
        for proc, log in zip(procs, logs, strict=True):
            try:
                proc.wait(timeout=480)
            finally:
                if proc.poll() is None:
                    proc.kill()
            assert proc.returncode == 0, log.read_text(errors="replace")[-4000:]
    finally:
        server.stop(grace=1.0)

    # The study as the search left it, and its own outputs: what the status must report.
    ran = optuna.load_study(study_name=study, storage=dsn)
    counted = counted_trials(ran.get_trials(deepcopy=False))
    complete = [t for t in counted if t.state == TrialState.COMPLETE]
    assert len(complete) == 6
    recorded = ran.user_attrs["outputs"]
    rows = read_csv(Path(recorded["subnetsCsv"]))
    feasible = [r for r in rows if r["state"] == "COMPLETE" and r["feasible"] == "True"]
    pareto = {int(r["trial"]) for r in rows if r["pareto"] == "True"}
    # The pods exited but the Job is not marked done yet: Running, with the final counts.
    st = wait_for(
        "the real trial counts",
        lambda: (x := cluster.status("nassearch", "nas-b")).get("trials", {}).get("complete")
        == len(complete) and x,
    )  # fmt: skip
    assert st["phase"] == "Running" and st["progress"] == "6/6"
    assert st["trials"]["total"] == len(counted) and st["trials"]["running"] == 0
    front = st["front"]
    assert front["size"] == len(pareto) > 0
    top = [e["trial"] for e in front["top"]]
    assert len(top) == min(3, len(pareto)) and set(top) <= pareto
    assert front["bestScore"] == round(max(float(r["accuracy_top1"]) for r in feasible), 4)
    assert front["lowestCost"] == round(min(float(r["latency_ms"]) for r in feasible), 4)
    by_number = {t.number: t for t in complete}
    assert [e["arch"] for e in front["top"]] == [
        by_number[n].user_attrs["arch_summary"] for n in top
    ]
    row = cluster.kubectl("get", "nassearch", "nas-b", "--no-headers").stdout.split()
    # NAME, Phase, Ready, Trials, Front, Best-Score, Metric, Min-Cost, Unit, Scope, Age
    assert row[:5] == ["nas-b", "Running", "False", "6/6", str(len(pareto))], row
    assert [float(row[5]), float(row[7])] == [front["bestScore"], front["lowestCost"]], row
    assert (st["metric"], st["costScope"]) == ("accuracy/top1", "network")
    assert row[6] == "accuracy/top1" and row[8:10] == ["ms", "network"], row
    assert len(row) == 11 and row[10][-1] in "smhd", row
    capture("nassearch-front", cluster.kubectl("get", "nassearch", "nas-b").stdout)

    cluster.job_complete("nas-b-search", completions=1)
    st = cluster.wait_phase("nassearch", "nas-b", "Succeeded")
    assert st["outputs"] == recorded
    # ... written under the work dir the Job's command named, on the results PVC
    work = pods[0].local(st["workDir"]).resolve()
    assert recorded["paretoHtml"] == str(work / "pareto_front.html")
    assert all(Path(path).exists() for path in recorded.values())
    wait_for("estimator removed", lambda: cluster.get("deployment", "nas-b-estimator") is None)
    assert cluster.get("service", "nas-b-estimator") is None
    assert cluster.status("nassearch", "nas-b")["estimator"]["removed"] is True
    # No deleteStudyOnDelete: no finalizer on any version, Waiting, Running (its trial counts
    # moved by the resync loop alone: no event touches the CR), Succeeded or after.
    versions = searches.versions("nassearch", "nas-b")
    assert {"Waiting", "Pending", "Running", "Succeeded"} <= phases(versions)
    progress = [
        int(p.split("/")[0]) for o in versions if (p := (o.get("status") or {}).get("progress"))
    ]
    assert progress == sorted(progress) and progress[-1] == 6  # trial counts never went back
    assert finalizers(versions) == set()

    # the DSN appears nowhere the operator writes, nor in what the search pods logged
    password = dsn.split(":")[2].split("@")[0]
    everything = cluster.kubectl("get", "nassearch,configmap,events,jobs", "-o", "yaml").stdout
    assert password not in everything and password not in operator.text()
    assert not [log.name for log in logs if password in log.read_text(errors="replace")]

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
        assert owned_by(job, cr)


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


def _cond(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return {c["type"]: c for c in st.get("conditions") or []}.get(type_, {})


def _health(cluster: Cluster, kind: str, name: str) -> str:
    """Argo CD's health of the resource as the API server holds it now (operator/argocd)."""
    return argocd_health(cluster.get(kind, name) or {})["status"]


def test_status_tells_pending_pods_the_estimator_a_scale_and_a_missing_study(
    cluster: Cluster, operator: OperatorProcess, dsn: str
) -> None:
    doc = search("nas-p", "unused", checkpoint="/results/x/st")
    del doc["spec"]["supernetTraining"]
    cluster.apply(doc)
    job = wait_for("search Job", lambda: cluster.get("job", "nas-p-search"))
    # a work queue: parallel workers on one study, done when they are; no completion count
    assert job["spec"]["parallelism"] == 2 and job["spec"].get("completions") is None
    st = cluster.wait_phase("nassearch", "nas-p", "Pending")
    assert "outputs" not in st  # nothing written yet, so no paths
    assert (st["costKey"], st["costUnit"], st["maxTrials"], st["parallelism"]) == (
        "latency", "ms", 6, 2,
    )  # fmt: skip

    # Every pod pending: one unschedulable, one creating its container (as the scheduler and
    # the kubelet report them). Not Ready, Progressing, and the message says why.
    if cluster.kube.has_controller_manager:
        pods = wait_for("2 pods", lambda: len(p := cluster.items(
            "pods", "batch.kubernetes.io/job-name=nas-p-search")) == 2 and p)  # fmt: skip
        cluster.pod_waiting(pods[0], False, "Unschedulable",
                            "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.")  # fmt: skip
        cluster.pod_waiting(pods[1], True, "ContainerCreating", "")
        expect = "Unschedulable: 1 (0/4 nodes are available"
    else:
        cluster.patch_status("job", "nas-p-search", {"active": 2, "ready": 0})
        expect = "2 pod(s) waiting to start"
    st = wait_for("pending reasons", lambda: expect in (
        x := cluster.status("nassearch", "nas-p")).get("message", "") and x)  # fmt: skip
    if cluster.kube.has_controller_manager:
        assert "ContainerCreating: 1" in st["message"]
    ready = _cond(st, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PodsPending")
    gen = cluster.get("nassearch", "nas-p")["metadata"]["generation"]
    assert ready["observedGeneration"] == st["observedGeneration"] == gen
    assert _cond(st, "Progressing")["status"] == _cond(st, "Reconciling")["status"] == "True"
    assert _health(cluster, "nassearch", "nas-p") == "Progressing"
    assert any(
        e["reason"] == "PodsPending" and expect in e["message"] for e in events(cluster, "nas-p")
    )  # the message changed within Pending
    (row,) = table(cluster.kubectl("get", "nassearch", "nas-p", "-o", "wide").stdout)
    assert {k: row[k] for k in ("NAME", "PHASE", "READY", "TRIALS", "UNIT", "COST-KEY")} == {
        "NAME": "nas-p", "PHASE": "Pending", "READY": "False", "TRIALS": "0/6", "UNIT": "ms",
        "COST-KEY": "latency",  # the spec leaves it to the default: shown all the same
    }, row  # fmt: skip
    (job_row,) = table(cluster.kubectl("get", "job", "nas-p-search").stdout)
    assert job_row["COMPLETIONS"] == "0/1 of 2", job_row  # kubectl's form for a work queue

    # parallelism is applied to the running Job, and the user is told; maxTrials is fixed now
    doc["spec"]["parallelism"] = 3
    cluster.apply(doc)
    wait_for("Job scaled", lambda: cluster.get("job", "nas-p-search")["spec"]["parallelism"] == 3)
    st = wait_for("status.parallelism 3", lambda: (
        x := cluster.status("nassearch", "nas-p")).get("parallelism") == 3 and x)  # fmt: skip
    assert st["observedGeneration"] == gen + 1
    scaled = wait_for("Scaled event", lambda: [
        e for e in events(cluster, "nas-p") if e["reason"] == "Scaled"])  # fmt: skip
    assert "parallelism 2 -> 3" in scaled[0]["message"]
    doc["spec"]["maxTrials"] = 60
    res = cluster.apply(doc, check=False)
    assert res.returncode != 0
    assert ("spec.maxTrials: Forbidden: spec.maxTrials is immutable once the NASSearch has "
            "left Waiting (it is Pending)") in res.stderr, res.stderr  # fmt: skip
    doc["spec"]["maxTrials"] = 6

    # The workers run, the estimator has no available replica yet: Running, not Ready.
    cluster.job_running("nas-p-search", active=3 if cluster.kube.has_controller_manager else 2)
    st = cluster.wait_phase("nassearch", "nas-p", "Running")
    assert (_cond(st, "Ready")["status"], _cond(st, "Ready")["reason"]) == (
        "False", "EstimatorNotAvailable",
    )  # fmt: skip
    assert "0/2 estimator replicas available" in st["message"]
    assert _health(cluster, "nassearch", "nas-p") == "Progressing"
    cluster.deployment_available("nas-p-estimator", 2)
    st = wait_for("Ready", lambda: _cond(
        x := cluster.status("nassearch", "nas-p"), "Ready").get("status") == "True" and x)  # fmt: skip
    assert _cond(st, "EstimatorReady")["reason"] == "ReplicasAvailable"
    assert _cond(st, "Reconciling")["status"] == "False"
    assert _health(cluster, "nassearch", "nas-p") == "Healthy"
    wait_for("PodsRunning event", lambda: "PodsRunning" in event_reasons(cluster, "nas-p"))
    capture("nassearch-running", cluster.kubectl("get", "nassearch", "nas-p", "-o", "wide").stdout)

    # The Job completes, but nobody wrote the study: it says so, and where it looked.
    cluster.job_complete("nas-p-search")
    st = cluster.wait_phase("nassearch", "nas-p", "Failed")
    assert _cond(st, "Failed")["reason"] == "StudyNotFound"
    assert f"study {st['studyName']} was not found in" in st["message"]
    host_db = dsn.split("@", 1)[1]
    assert host_db in st["message"] and dsn.split(":")[2].split("@")[0] not in st["message"]
    assert _cond(st, "Stalled")["status"] == "True"
    assert _health(cluster, "nassearch", "nas-p") == "Degraded"
    assert "outputs" not in st


def test_deleted_dependency_warns_and_the_reference_may_change_while_waiting(
    cluster: Cluster, operator: OperatorProcess, dsn: str
) -> None:
    cluster.apply(training("st-gone", gpusPerWorker=1))
    cluster.apply(search("nas-w", "st-gone"))
    cluster.apply(export("sx-w", "nas-w", 0))
    wait_for("waiting on st-gone", lambda: "to succeed" in cluster.status(
        "nassearch", "nas-w").get("message", ""))  # fmt: skip
    cluster.kubectl("delete", "supernettraining", "st-gone", "--wait=true", "--timeout=60s")
    st = wait_for("DependencyNotFound", lambda: _cond(
        x := cluster.status("nassearch", "nas-w"), "Ready").get("reason") == "DependencyNotFound"
        and x)  # fmt: skip
    assert st["phase"] == "Waiting" and "SupernetTraining st-gone not found" in st["message"]
    warned = wait_for("the Warning event", lambda: [
        e for e in events(cluster, "nas-w")
        if e["type"] == "Warning" and e["reason"] == "DependencyNotFound"])  # fmt: skip
    assert "st-gone not found" in warned[0]["message"]
    assert _health(cluster, "nassearch", "nas-w") == "Progressing"
    assert _health(cluster, "subnetexport", "sx-w") == "Progressing"  # waits for nas-w

    # While Waiting, the reference may change: pointed at a training that succeeded, it runs.
    cluster.apply(training("st-new", gpusPerWorker=1))
    wait_for("train Job", lambda: cluster.get("job", "st-new-train"))
    cluster.job_complete("st-new-train", indexed=True)
    cluster.wait_phase("supernettraining", "st-new", "Succeeded")
    assert _health(cluster, "supernettraining", "st-new") == "Healthy"
    cluster.apply(search("nas-w", "st-new"))
    job = wait_for("search Job", lambda: cluster.get("job", "nas-w-search"))
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--checkpoint") + 1].endswith(f"/{cluster.ns}/st-new")
    cluster.wait_phase("nassearch", "nas-w", "Pending")
    res = cluster.apply(search("nas-w", "st-gone"), check=False)  # left Waiting: fixed now
    assert (
        res.returncode != 0
        and (
            "spec.supernetTraining: Forbidden: spec.supernetTraining is immutable once the "
            "NASSearch has left Waiting (it is Pending)"
        )
        in res.stderr
    ), res.stderr

    # A missing DSN Secret: a Warning event that says how to make it.
    cluster.apply(search("nas-s", "st-new", storage={"secretName": "no-such", "secretKey": "dsn"}))
    warned = wait_for("the Warning event", lambda: [
        e for e in events(cluster, "nas-s") if e["type"] == "Warning"])  # fmt: skip
    assert warned[0]["reason"] == "Waiting" and "Secret no-such" in warned[0]["message"]
    assert "kubectl -n" in warned[0]["message"]
    cluster.kubectl("delete", "nassearch/nas-s", "nassearch/nas-w", "subnetexport/sx-w",
                    "--wait=false")  # fmt: skip


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


def test_kubectl_edit_of_a_fixed_field_shows_the_rules_message(crds: Any, tmp_path: Path) -> None:
    """kubectl edit prints only "... is invalid" on stderr (its own format for a 422) and
    reopens the editor with the API server's causes on top: there the rules' messages must be,
    at the field's path."""
    import os
    import subprocess

    ns = "edit-" + secrets.token_hex(3)  # not watched: the status is written by hand
    crds.kubectl("create", "namespace", ns)
    doc = _valid("NASSearch", "ed")
    doc["spec"]["costKey"] = "latency"
    crds.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(doc))
    crds.kubectl("patch", "nassearch", "ed", "-n", ns, "--subresource=status", "--type=merge",
                 "-p", json.dumps({"status": {"phase": "Running"}}))  # fmt: skip
    editor = tmp_path / "editor.sh"
    editor.write_text(
        "#!/bin/sh\n"
        f'cp "$1" "{tmp_path}/buffer.$(ls {tmp_path} | grep -c buffer)"\n'
        "sed -i 's/^  costKey: latency/  costKey: energy/; s/^  maxTrials: 6$/  maxTrials: 60/' "
        '"$1"\n'
    )
    editor.chmod(0o755)
    res = subprocess.run(
        [crds.kubectl_path, "--kubeconfig", str(crds.kubeconfig), "-n", ns, "edit",
         "nassearch", "ed"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "KUBE_EDITOR": str(editor)},
    )  # fmt: skip
    assert res.returncode != 0 and "is invalid" in res.stderr, res.stderr
    reopened = (tmp_path / "buffer.1").read_text()
    assert '# nassearches.gen5nas.io "ed" was not valid:' in reopened, reopened
    assert "# * spec.costKey: Forbidden: spec.costKey is immutable" in reopened, reopened
    assert (
        "# * spec.maxTrials: Forbidden: spec.maxTrials is immutable once the NASSearch has left "
        "Waiting (it is Running)"
    ) in reopened, reopened


def test_examples_pass_the_crd_schema(crds: Any) -> None:
    files = sorted([*EXAMPLES.glob("*.yaml"), *EXAMPLES.glob("detection/*.yaml")])
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


def _example(name: str, namespace: str) -> dict[str, Any]:
    """examples/<name>.yaml, moved to ``namespace`` (the one the test operator watches)."""
    (doc,) = [d for d in yaml.safe_load_all((EXAMPLES / f"{name}.yaml").read_text()) if d]
    doc["metadata"]["namespace"] = namespace
    return doc


def _check_pod_volumes(pod: dict[str, Any], container: dict[str, Any], rt: Any) -> None:
    """The volumes a workload pod gets from ``rt`` (a RuntimeSpec): the dataset PVC read-only,
    the results PVC writable, /dev/shm in memory of the asked size."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert volumes["dataset"]["persistentVolumeClaim"] == {
        "claimName": rt.dataset_pvc, "readOnly": True,
    }  # fmt: skip
    assert mounts["dataset"]["mountPath"] == rt.dataset_mount_path
    assert mounts["dataset"]["readOnly"] is True
    assert volumes["results"]["persistentVolumeClaim"] == {"claimName": rt.results_pvc}
    assert mounts["results"]["mountPath"] == rt.results_mount_path
    assert not mounts["results"].get("readOnly")
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": rt.shm_size}
    assert mounts["dshm"]["mountPath"] == "/dev/shm"


def _check_resources(container: dict[str, Any], rt: Any) -> None:
    res = container["resources"]
    gpus = str(rt.gpus_per_worker)
    assert res["requests"]["nvidia.com/gpu"] == res["limits"]["nvidia.com/gpu"] == gpus
    assert res["requests"]["cpu"] == rt.cpu and res["requests"]["memory"] == rt.memory


def test_examples_make_the_children_they_describe(
    cluster: Cluster, operator: OperatorProcess, dsn: str
) -> None:
    """kubectl apply of the three shipped examples, as written but for the namespace: the
    children's specs carry what the manifests ask for, and each step waits for the one before."""
    from gen5nas.spec.common import RuntimeSpec

    ns = cluster.ns
    tr, se, sx = (_example(n, ns) for n in ("supernettraining", "nassearch", "subnetexport"))
    tr_name, se_name, sx_name = (d["metadata"]["name"] for d in (tr, se, sx))
    storage = se["spec"]["storage"]
    # the examples name the chart's default Secret, which the dsn fixture has made already
    assert (storage["secretName"], storage["secretKey"]) == ("gen5nas-postgres", "dsn")
    cluster.apply(yaml.safe_dump_all([tr, se, sx]))

    # SupernetTraining -> an Indexed Job (one pod per worker) + its headless Service.
    rt = RuntimeSpec.model_validate(tr["spec"]["runtime"])
    cr = cluster.get("supernettraining", tr_name)
    assert cr is not None
    job = wait_for("train Job", lambda: cluster.get("job", f"{tr_name}-train"))
    assert owned_by(job, cr)
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == rt.workers
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == rt.image
    _check_resources(container, rt)
    assert pod["nodeSelector"] == tr["spec"]["runtime"]["nodeSelector"]
    assert pod["tolerations"] == tr["spec"]["runtime"]["tolerations"]
    _check_pod_volumes(pod, container, rt)
    command = container["command"]
    assert command[0] == "torchrun" and f"--nnodes={rt.workers}" in command
    assert f"--nproc-per-node={rt.processes_per_worker}" in command
    assert command[command.index("--work-dir") + 1] == f"{rt.results_mount_path}/{ns}/{tr_name}"
    env = {e["name"]: e for e in container["env"]}
    assert env["GEN5NAS_NAMESPACE"]["value"] == ns
    assert env["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    )
    svc = cluster.get("service", f"{tr_name}-rdzv")
    assert svc is not None and owned_by(svc, cr) and svc["spec"]["clusterIP"] == "None"
    assert pod["subdomain"] == svc["metadata"]["name"]
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    cm = cluster.get("configmap", f"{tr_name}-spec")
    assert cm is not None and owned_by(cm, cr)
    contains(yaml.safe_load(cm["data"]["spec.yaml"])["spec"], tr["spec"])

    # NASSearch and SubnetExport wait: no Job before the step they need has succeeded.
    st = cluster.wait_phase("nassearch", se_name, "Waiting")
    assert tr_name in st["message"]
    cluster.wait_phase("subnetexport", sx_name, "Waiting")
    assert cluster.get("job", se_name) is None  # the search Job: the role said once
    assert cluster.get("job", f"{sx_name}-export") is None

    cluster.job_complete(f"{tr_name}-train", completions=rt.workers, indexed=True)
    checkpoint = cluster.wait_phase("supernettraining", tr_name, "Succeeded")["checkpoint"]

    # NASSearch -> the estimator Deployment + headless Service, and the search Job.
    srt = RuntimeSpec.model_validate(se["spec"]["runtime"])
    est = se["spec"]["estimator"]
    cr = cluster.get("nassearch", se_name)
    assert cr is not None
    job = wait_for("search Job", lambda: cluster.get("job", se_name))
    assert owned_by(job, cr) and job["spec"]["parallelism"] == se["spec"]["parallelism"]
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    _check_resources(container, srt)
    _check_pod_volumes(pod, container, srt)
    env = {e["name"]: e for e in container["env"]}
    assert env["GEN5NAS_STORAGE_URL"] == {
        "name": "GEN5NAS_STORAGE_URL",
        "valueFrom": {"secretKeyRef": {"name": storage["secretName"], "key": storage["secretKey"]}},
    }
    assert dsn not in json.dumps(job)  # the DSN only by reference, never a literal
    command = container["command"]
    assert command[command.index("--checkpoint") + 1] == checkpoint
    assert command[command.index("--work-dir") + 1] == f"{srt.results_mount_path}/{ns}/{se_name}"
    dep = wait_for("estimator", lambda: cluster.get("deployment", f"{se_name}-estimator"))
    assert owned_by(dep, cr) and dep["spec"]["replicas"] == est["replicas"]
    template = dep["spec"]["template"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    (server,) = template["spec"]["containers"]
    assert [p["containerPort"] for p in server["ports"] if p["name"] != "metrics"] == est["ports"]
    at = server["command"].index("--port")
    assert server["command"][at : at + len(est["ports"]) + 1] == ["--port", *map(str, est["ports"])]
    for probe in ("readinessProbe", "livenessProbe"):
        # gRPC health of the whole server ("" service) on its first port
        assert server[probe]["grpc"]["port"] == est["ports"][0], probe
        assert server[probe]["grpc"].get("service", "") == "", probe
    svc = cluster.get("service", f"{se_name}-estimator")
    assert svc is not None and owned_by(svc, cr) and svc["spec"]["clusterIP"] == "None"
    assert [p["port"] for p in svc["spec"]["ports"] if p["name"] != "metrics"] == est["ports"]
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    cm = cluster.get("configmap", f"{se_name}-spec")
    assert cm is not None and owned_by(cm, cr)
    document = yaml.safe_load(cm["data"]["spec.yaml"])["spec"]
    assert document["checkpoint"] == checkpoint
    assert document["estimator"]["servers"] == [
        {"host": f"{se_name}-estimator.{ns}.svc", "ports": est["ports"]}
    ]
    assert "url" not in document["storage"]
    contains(
        document, {**se["spec"], "estimator": {**est, "servers": document["estimator"]["servers"]}}
    )
    cluster.wait_phase("nassearch", se_name, "Pending")

    # SubnetExport: its SupernetTraining succeeded, but it still waits for its NASSearch.
    st = wait_for(
        "the export waiting for its NASSearch",
        lambda: se_name in (x := cluster.status("subnetexport", sx_name)).get("message", "") and x,
    )
    assert st["phase"] == "Waiting"
    assert cluster.get("job", f"{sx_name}-export") is None
    mine = [f"supernettraining/{tr_name}", f"nassearch/{se_name}", f"subnetexport/{sx_name}"]
    capture("examples", "\n".join(
        cluster.kubectl("get", *args).stdout
        for args in (mine, [*mine, "-o", "wide"], ["jobs", f"{tr_name}-train", se_name])
    ))  # fmt: skip

    cluster.kubectl(
        "delete", f"subnetexport/{sx_name}", f"nassearch/{se_name}",
        f"supernettraining/{tr_name}", "--wait=false",
    )  # fmt: skip

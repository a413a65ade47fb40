"""Child manifests from specs: pure functions, no cluster."""

from __future__ import annotations

from typing import Any

import yaml

from gen5nas.spec.common import read_manifest
from gen5nas.spec.search import NASSearchSpec
from gen5nas.spec.space import parse_model
from gen5nas.spec.training import SupernetTrainingSpec
from gen5nas_operator.common.ownership import MANAGED_BY, MAX_NAME, Owner, child_name
from gen5nas_operator.common.pods import SPEC_FILE, STORAGE_ENV, effective_spec
from gen5nas_operator.kinds.export.children import export_children
from gen5nas_operator.kinds.search.children import search_children
from gen5nas_operator.kinds.training.children import (
    WORKLOAD_SERVICE_ACCOUNT,
    training_children,
    workload_identity,
)
from gen5nas_operator.settings import Settings

OWNER = Owner("NASSearch", "nas-1", "team-a", "1234abcd-0000-0000-0000-000000000000")
SETTINGS = Settings(workload_image="reg/workload:1", estimator_image="reg/est:1")


def _training(**runtime: Any) -> tuple[SupernetTrainingSpec, dict[str, Any]]:
    raw = {
        "searchSpace": {"name": "mobilenetv2_tiny"},
        "dataset": {"kind": "imagefolder", "path": "/data/imagenet"},
        "runtime": runtime,
    }
    return parse_model(SupernetTrainingSpec, raw, source="t"), raw


def _search(**extra: Any) -> tuple[NASSearchSpec, dict[str, Any]]:
    raw = {"checkpoint": "/results/x", "dataset": {"kind": "digits"}, "parallelism": 3, **extra}
    return parse_model(NASSearchSpec, raw, source="t"), raw


def test_child_names_fit_dns_labels_and_stay_stable() -> None:
    long = Owner("NASSearch", "n" * 80, "ns", "uid")
    name = child_name(long, "estimator")
    assert len(name) <= MAX_NAME and name == child_name(long, "estimator")
    assert name != child_name(long, "search")
    assert child_name(OWNER, "search") == "nas-1-search"
    # the role said once: the example NASSearch "...-search" has the Job "...-search"
    named = Owner("NASSearch", "mobilenetv2-sample1-in1k-search", "ns", "uid")
    assert child_name(named, "search") == "mobilenetv2-sample1-in1k-search"
    assert child_name(named, "estimator") == "mobilenetv2-sample1-in1k-search-estimator"


def test_indexed_job_training_with_gpus_volumes_and_rendezvous() -> None:
    spec, raw = _training(
        workers=3, gpusPerWorker=8, nodeSelector={"pool": "gpu"}, datasetPvc="imagenet",
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        cpu="16", memory="64Gi",
    )  # fmt: skip
    owner = Owner("SupernetTraining", "st", "ns", "u-1")
    cm, job, svc = training_children(owner, spec, raw, SETTINGS, use_pytorchjob=False)
    assert [cm["kind"], job["kind"], svc["kind"]] == ["ConfigMap", "Job", "Service"]
    for child in (cm, job, svc):
        ref = child["metadata"]["ownerReferences"][0]
        assert ref["uid"] == "u-1" and ref["controller"] is True
    js = job["spec"]
    assert (js["completionMode"], js["completions"], js["parallelism"]) == ("Indexed", 3, 3)
    pod = js["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"] == "reg/workload:1"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert c["resources"]["requests"] == {"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": "8"}
    assert "--nproc-per-node=8" in c["command"] and "--nnodes=3" in c["command"]
    assert "--master-addr=st-train-0.st-rdzv.ns.svc" in c["command"]
    assert c["command"][c["command"].index("-f") + 1] == SPEC_FILE
    assert pod["subdomain"] == svc["metadata"]["name"] == "st-rdzv"
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"]
    assert svc["spec"]["selector"].items() <= pod_labels(job).items()
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["dataset"]["readOnly"] and mounts["dshm"]["mountPath"] == "/dev/shm"
    assert pod["nodeSelector"] == {"pool": "gpu"} and pod["tolerations"][0]["operator"] == "Exists"


def pod_labels(job: dict[str, Any]) -> dict[str, str]:
    return job["spec"]["template"]["metadata"]["labels"]


def test_configmap_holds_a_manifest_the_cli_reads(tmp_path: Any) -> None:
    spec, raw = _training(workers=1)
    owner = Owner("SupernetTraining", "st", "ns", "u-1")
    cm = training_children(owner, spec, raw, SETTINGS, use_pytorchjob=False)[0]
    path = tmp_path / "spec.yaml"
    path.write_text(cm["data"]["spec.yaml"])
    manifest, read = read_manifest(path, "SupernetTraining")  # what `gen5nas train -f` does
    assert manifest.name == "st" and read == raw


def test_pytorchjob_when_the_training_operator_is_installed() -> None:
    spec, raw = _training(workers=4, gpusPerWorker=2)
    owner = Owner("SupernetTraining", "st", "ns", "u-1")
    _cm, pj = training_children(owner, spec, raw, SETTINGS, use_pytorchjob=True)
    assert pj["apiVersion"] == "kubeflow.org/v1" and pj["spec"]["nprocPerNode"] == "2"
    replicas = pj["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 3
    assert replicas["Master"]["template"]["spec"]["containers"][0]["name"] == "pytorch"


def test_search_children_estimator_job_and_secret_dsn() -> None:
    spec, raw = _search(
        estimator={"replicas": 3, "ports": [6000, 6001]}, storage={"secretName": "pg"}
    )
    cm, dep, svc, job = search_children(OWNER, spec, raw, SETTINGS, "/results/ck", ("pg", "dsn"))
    doc = yaml.safe_load(cm["data"]["spec.yaml"])["spec"]
    assert doc["studyName"] == "team-a.nas-1.1234abcd" and doc["checkpoint"] == "/results/ck"
    assert doc["estimator"]["servers"] == [
        {"host": "nas-1-estimator.team-a.svc", "ports": [6000, 6001]}
    ]
    assert doc["estimator"]["replicas"] == 3 and doc["storage"] == {"secretName": "pg"}
    parse_model(NASSearchSpec, doc, source="cm")  # still a valid spec
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert dep["spec"]["replicas"] == 3 and c["image"] == "reg/est:1"
    assert c["command"] == [
        "gen5nas", "estimator", "serve", "--drain-delay", "5", "--port", "6000", "6001",
        "--metrics-port", "9464",
    ]  # fmt: skip
    assert c["readinessProbe"]["grpc"] == {"port": 6000} and "grpc" in c["livenessProbe"]
    assert [p["port"] for p in svc["spec"]["ports"]] == [6000, 6001, 9464]  # + metrics
    assert svc["spec"]["clusterIP"] == "None"
    assert (
        dep["spec"]["selector"]["matchLabels"].items()
        <= dep["spec"]["template"]["metadata"]["labels"].items()
    )
    js = job["spec"]
    assert js["parallelism"] == 3 and "completions" not in js
    env = {e["name"]: e for e in js["template"]["spec"]["containers"][0]["env"]}
    assert env[STORAGE_ENV] == {
        "name": STORAGE_ENV, "valueFrom": {"secretKeyRef": {"name": "pg", "key": "dsn"}},
    }  # fmt: skip
    assert "value" not in env[STORAGE_ENV]


def test_search_with_external_estimators_makes_no_deployment() -> None:
    spec, raw = _search(estimator={"servers": [{"host": "ppa.lab", "ports": [50051]}]})
    kinds = [m["kind"] for m in search_children(OWNER, spec, raw, SETTINGS, "/c", ("s", "k"))]
    assert kinds == ["ConfigMap", "Job"]


def test_effective_spec_merges_and_removes() -> None:
    raw = {"a": {"b": 1, "c": 2}, "d": 3}
    assert effective_spec(raw, {"a": {"c": None, "e": 4}, "d": None, "f": {"g": None}}) == {
        "a": {"b": 1, "e": 4}, "f": {},
    }  # fmt: skip
    assert raw == {"a": {"b": 1, "c": 2}, "d": 3}  # the CR's spec is not modified


def test_export_job_reads_the_study_dsn_from_the_secret_only() -> None:
    from gen5nas.spec.export import SubnetExportSpec

    raw = {"nasSearch": "nas-1", "trial": 4, "runtime": {"gpusPerWorker": 0}}
    spec = parse_model(SubnetExportSpec, raw, source="t")
    owner = Owner("SubnetExport", "sx", "team-a", "u-2")
    overrides = {
        "checkpoint": "/results/team-a/st",
        "studyName": "team-a.nas-1.abc",
        "storage": None,
    }
    cm, job = export_children(owner, spec, raw, SETTINGS, overrides, ("pg", "dsn"))
    doc = yaml.safe_load(cm["data"]["spec.yaml"])["spec"]
    assert doc == {**raw, "checkpoint": "/results/team-a/st", "studyName": "team-a.nas-1.abc"}
    c = job["spec"]["template"]["spec"]["containers"][0]
    script = c["command"][-1]
    assert '--storage "$GEN5NAS_STORAGE_URL"' in script and "gen5nas_operator.termination" in script
    assert "nvidia.com/gpu" not in str(c["resources"])
    assert c["env"][-1]["valueFrom"]["secretKeyRef"] == {"name": "pg", "key": "dsn"}
    _, no_study = export_children(owner, spec, raw, SETTINGS, overrides)
    assert "--storage" not in no_study["spec"]["template"]["spec"]["containers"][0]["command"][-1]


def test_training_pods_know_their_name_and_run_as_the_workload_account() -> None:
    owner = Owner("SupernetTraining", "st", "ns", "u-1")
    for use_pytorchjob in (False, True):
        spec, raw = _training(workers=2)
        job = training_children(owner, spec, raw, SETTINGS, use_pytorchjob=use_pytorchjob)[1]
        if use_pytorchjob:
            templates = [r["template"] for r in job["spec"]["pytorchReplicaSpecs"].values()]
        else:
            templates = [job["spec"]["template"]]
        for template in templates:
            pod = template["spec"]
            assert pod["serviceAccountName"] == WORKLOAD_SERVICE_ACCOUNT == "gen5nas-workload"
            env = {e["name"]: e for e in pod["containers"][0]["env"]}
            assert env["GEN5NAS_POD_NAME"]["valueFrom"] == {
                "fieldRef": {"fieldPath": "metadata.name"}
            }
            assert env["GEN5NAS_POD_NAMESPACE"]["valueFrom"] == {
                "fieldRef": {"fieldPath": "metadata.namespace"}
            }
    # a service account named in the spec wins (its RBAC is then the user's)
    spec, raw = _training(serviceAccountName="team-sa")
    job = training_children(owner, spec, raw, SETTINGS, use_pytorchjob=False)[1]
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "team-sa"
    # other steps do not report progress and keep the namespace's default account
    sspec, sraw = _search()
    search_job = search_children(OWNER, sspec, sraw, SETTINGS, "/c", ("s", "k"))[-1]
    search_pod = search_job["spec"]["template"]["spec"]
    assert "serviceAccountName" not in search_pod
    assert "GEN5NAS_POD_NAME" not in {e["name"] for e in search_pod["containers"][0]["env"]}


def test_workload_identity_may_patch_pods_and_nothing_else() -> None:
    sa, role, binding = workload_identity("team-a")
    assert [sa["kind"], role["kind"], binding["kind"]] == ["ServiceAccount", "Role", "RoleBinding"]
    for obj in (sa, role, binding):
        meta = obj["metadata"]
        assert (meta["name"], meta["namespace"]) == (WORKLOAD_SERVICE_ACCOUNT, "team-a")
        assert "ownerReferences" not in meta  # shared by every training in the namespace
        assert meta["labels"]["app.kubernetes.io/managed-by"] == MANAGED_BY
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]}]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gen5nas-workload",
    }  # fmt: skip
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "gen5nas-workload", "namespace": "team-a"}
    ]

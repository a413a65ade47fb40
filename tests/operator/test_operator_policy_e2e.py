"""The operator as a security boundary, against the real kube-apiserver with the operator running
under its own ServiceAccount and its default policy (no GEN5NAS_POLICY, as a chart install with
default values gives it, but for the PVCs it names): what the policy refuses goes Failed with
reason PolicyViolation, a ``policy:`` message and a Warning Event, and gets no children; a child
the API server refuses lands in status with the API server's message; an InvalidSpec is not
reconciled again until its generation changes; admission refuses a mount path with ``..`` or
over a system directory; and
every child pod passes the ``restricted`` Pod Security Standard, enforced by the API server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.operator_e2e import (
    EXAMPLES,
    Cluster,
    OperatorProcess,
    search,
    service_account_kubeconfig,
    training,
    wait_for,
)

from gen5nas.spec.training import SupernetTrainingSpec
from gen5nas_operator.common.ownership import Owner
from gen5nas_operator.kinds.training.children import training_pytorchjob
from gen5nas_operator.settings import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def operator(crds: Any, namespace: str, tmp_path_factory: Any) -> Iterator[OperatorProcess]:
    """This module's operator: the default policy."""
    work = tmp_path_factory.mktemp("operator-policy")
    kubeconfig = service_account_kubeconfig(crds, namespace, work / "kubeconfig")
    op = OperatorProcess(kubeconfig, namespace, work / "operator.log", policy=None)
    op.start()
    try:
        yield op
    finally:
        op.stop()
        print(op.text()[-5000:])


def events(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    res = cluster.kubectl(
        "get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json"
    )
    return list(json.loads(res.stdout)["items"])


def export_of(name: str, **spec: Any) -> dict[str, Any]:
    """A SubnetExport that depends on nothing: a checkpoint and an arch file on the PVC."""
    return {
        "apiVersion": "gen5nas.io/v1alpha1", "kind": "SubnetExport", "metadata": {"name": name},
        "spec": {"checkpoint": "/results/x", "archFile": "/results/x/fix_subnets/trial_1.yaml",
                 "runtime": {"gpusPerWorker": 0}, **spec},
    }  # fmt: skip


def failed(cluster: Cluster, kind: str, name: str) -> dict[str, Any]:
    st = cluster.wait_phase(kind, name, "Failed")
    return {"status": st, "reason": {c["type"]: c for c in st["conditions"]}["Failed"]["reason"]}


VIOLATIONS = [
    ("image", {"image": "docker.io/evil/miner:1"}, "spec.runtime.image", "ghcr.io/gen5nas/"),
    ("account", {"serviceAccountName": "cluster-admin-sa"}, "spec.runtime.serviceAccountName",
     "gen5nas-workload"),
    ("pvc", {"datasetPvc": "team-b-data"}, "spec.runtime.datasetPvc", "gen5nas.io/allowed=true"),
    ("mount", {"resultsMountPath": "/mnt/results"}, "spec.runtime.resultsMountPath",
     "/data, /results"),
    ("toleration", {"tolerations": [{"key": "node-role.kubernetes.io/control-plane",
                                     "operator": "Exists"}]},
     "spec.runtime.tolerations[0]", "nvidia.com/gpu"),
    ("selector", {"nodeSelector": {"kubernetes.io/hostname": "control-plane-0"}},
     "spec.runtime.nodeSelector.kubernetes.io/hostname", "nvidia.com/gpu.product"),
]  # fmt: skip


def test_what_the_policy_refuses_fails_with_an_event_and_no_children(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    # team-b's PVC (no allow label) and team-a's, labelled by the administrator.
    for name, labels in (("team-b-data", {"team": "b"}),
                         ("team-a-data", {"gen5nas.io/allowed": "true"})):  # fmt: skip
        cluster.apply({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "labels": labels},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
        })  # fmt: skip
    for what, runtime, _, _ in VIOLATIONS:
        cluster.apply(training(f"bad-{what}", **runtime))
    cluster.apply(search("bad-estimator", "bad-image", estimator={"image": "quay.io/x/est:1"}))
    cluster.apply(search("bad-secret", "bad-image", storage={"secretName": "payroll-db"}))
    searches = [("estimator", {}, "spec.estimator.image", "ghcr.io/gen5nas/"),
                ("secret", {}, "spec.storage.secretName", "gen5nas-postgres")]  # fmt: skip
    for what, _, field, allowed in [*VIOLATIONS, *searches]:
        kind = "nassearch" if (what, {}, field, allowed) in searches else "supernettraining"
        got = failed(cluster, kind, f"bad-{what}")
        message = got["status"]["message"]
        assert got["reason"] == "PolicyViolation", got
        assert message.startswith(f"policy: {field}: ") and allowed in message, message
        warning = wait_for(
            f"the Failed event of bad-{what}",
            lambda n=f"bad-{what}": [e for e in events(cluster, n) if e["reason"] == "Failed"],
        )
        assert warning[0]["type"] == "Warning" and warning[0]["message"] == message
    for child in ("bad-image-train", "bad-image-spec", "bad-estimator-search"):
        assert cluster.get("job" if "spec" not in child else "configmap", child) is None

    # what the policy allows: the labelled PVC, the project's image, a GPU toleration
    cluster.apply(training(
        "good", image="ghcr.io/gen5nas/workload:0.0.1", datasetPvc="team-a-data",
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        nodeSelector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
    ))  # fmt: skip
    cluster.wait_phase("supernettraining", "good", "Pending")
    assert cluster.get("job", "good-train") is not None

    # the shipped example, as written but for the namespace, meets the default policy
    example = yaml.safe_load((EXAMPLES / "supernettraining.yaml").read_text())
    example["metadata"] = {"name": "example"}
    cluster.apply(example)
    cluster.wait_phase("supernettraining", "example", "Pending")


def test_a_child_the_api_server_refuses_lands_in_status(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    """A label value with a space passes the CRD and the policy (any GPU product is allowed)
    but not the API server's validation of the Job."""
    cluster.apply(training("refused", nodeSelector={"nvidia.com/gpu.product": "NVIDIA H100"}))
    got = failed(cluster, "supernettraining", "refused")
    message = got["status"]["message"]
    assert got["reason"] == "ChildRejected", got
    assert message.startswith("the API server refused to create Job refused-train: ")
    assert "nodeSelector" in message and "Invalid value" in message, message
    warning = next(e for e in events(cluster, "refused") if e["reason"] == "Failed")
    assert warning["type"] == "Warning" and warning["message"] == message
    assert cluster.get("job", "refused-train") is None
    assert "Traceback" not in operator.text()


def test_an_invalid_spec_is_not_reconciled_again_until_its_generation_changes(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    # A study URL in a cluster spec: the CRD accepts it, the operator does not (the DSN comes
    # from a Secret); storage is not immutable, so a new generation can drop it.
    bad = export_of("invalid", storage="sqlite:///studies.db")
    cluster.apply(bad)
    got = failed(cluster, "subnetexport", "invalid")
    assert got["reason"] == "InvalidSpec" and "spec.storage" in got["status"]["message"]
    version = (cluster.get("subnetexport", "invalid") or {})["metadata"]["resourceVersion"]
    seen = len(events(cluster, "invalid"))

    # Two resync passes later (each seen by a Job change only the loop notices), nothing moved.
    cluster.apply(training("witness"))
    wait_for("witness Job", lambda: cluster.get("job", "witness-train"))
    cluster.wait_phase("supernettraining", "witness", "Pending")
    cluster.job_running("witness-train")
    cluster.wait_phase("supernettraining", "witness", "Running")
    cluster.job_complete("witness-train", indexed=True)
    cluster.wait_phase("supernettraining", "witness", "Succeeded")
    after = cluster.get("subnetexport", "invalid") or {}
    assert after["metadata"]["resourceVersion"] == version
    assert len(events(cluster, "invalid")) == seen

    # A new generation is reconciled: the fixed spec gets its children.
    del bad["spec"]["storage"]
    cluster.apply(bad)
    cluster.wait_phase("subnetexport", "invalid", "Pending")
    assert cluster.get("job", "invalid-export") is not None


@pytest.mark.parametrize("path", ["/results/../etc", "/usr/local/lib/python3.11", "/tmp"])
def test_admission_refuses_a_mount_path_over_the_image_or_with_dot_dot(
    cluster: Cluster, path: str
) -> None:
    res = cluster.apply(training("mount", resultsMountPath=path), check=False)
    assert res.returncode != 0 and "spec.runtime.resultsMountPath" in res.stderr, res.stderr
    assert cluster.get("supernettraining", "mount") is None


def _as_pod(name: str, template: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": template["spec"]}  # fmt: skip


def test_every_child_pod_passes_the_restricted_pod_security_standard(
    cluster: Cluster, operator: OperatorProcess, tmp_path: Path
) -> None:
    # The operator's own children: a training's Indexed Job, a search's estimator and Job.
    cluster.kubectl("create", "secret", "generic", "gen5nas-postgres",
                    "--from-literal=dsn=postgresql+psycopg2://u:p@db:5432/x")  # fmt: skip
    cluster.apply(training("psa-train"))
    nas = search("psa-search", "unused")
    del nas["spec"]["supernetTraining"]
    nas["spec"]["checkpoint"] = "/results/x"
    cluster.apply(nas)
    cluster.apply(export_of("psa-x"))
    templates = {
        "train": wait_for("train Job", lambda: cluster.get("job", "psa-train")),
        "estimator": wait_for(
            "estimator", lambda: cluster.get("deployment", "psa-search-estimator")
        ),
        "search": wait_for("search Job", lambda: cluster.get("job", "psa-search")),
        "export": wait_for("export Job", lambda: cluster.get("job", "psa-x-export")),
    }
    pods = {k: _as_pod(f"psa-{k}", v["spec"]["template"]) for k, v in templates.items()}
    # A PyTorchJob's replicas (the Kubeflow operator makes their pods from these templates).
    owner = Owner("SupernetTraining", "psa-ptj", cluster.ns, "u-1")
    spec = SupernetTrainingSpec.model_validate({**training("x")["spec"], "runtime": {"workers": 2}})
    for role, replica in training_pytorchjob(owner, spec, Settings())["spec"][
        "pytorchReplicaSpecs"
    ].items():
        pods[f"pytorchjob-{role.lower()}"] = _as_pod(f"psa-ptj-{role.lower()}", replica["template"])

    restricted = f"{cluster.ns}-restricted"
    cluster.kube.kubectl("create", "namespace", restricted)
    cluster.kube.kubectl("label", "namespace", restricted,
                         "pod-security.kubernetes.io/enforce=restricted")  # fmt: skip
    strict = Cluster(cluster.kube, restricted)
    for what, pod in pods.items():
        res = strict.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(pod),
                             check=False)  # fmt: skip
        assert res.returncode == 0 and "Warning" not in res.stderr, f"{what}: {res.stderr}"
    # the check can fail: the same pod without its security context is refused
    bare = json.loads(json.dumps(pods["train"]))
    bare["spec"].pop("securityContext")
    for c in bare["spec"]["containers"]:
        c.pop("securityContext")
    res = strict.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(bare),
                         check=False)  # fmt: skip
    assert res.returncode != 0 and 'violates PodSecurity "restricted' in res.stderr, res.stderr


def test_a_child_refused_for_now_waits_and_is_made_once_allowed(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    """A quota of no Jobs in the namespace: the API server forbids the Job (403, "exceeded quota"
    or "status unknown for quota" before the quota controller counted); the training waits with
    that message and gets its Job on a later resync once the quota is gone. Last in the module:
    the quota holds for the whole namespace."""
    cluster.apply({
        "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-jobs"},
        "spec": {"hard": {"count/jobs.batch": "0"}},
    })  # fmt: skip
    cluster.apply(training("over-quota"))
    st = cluster.wait_phase("supernettraining", "over-quota", "Waiting")
    assert {c["type"]: c for c in st["conditions"]}["Ready"]["reason"] == "ChildRefused"
    assert st["message"].startswith("the API server refused to create Job over-quota-train: ")
    assert "quota" in st["message"] and "no-jobs" in st["message"], st["message"]
    event = wait_for(
        "the Waiting event",
        lambda: [e for e in events(cluster, "over-quota") if e["reason"] == "Waiting"],
    )
    assert event[0]["message"] == st["message"]
    cluster.kubectl("delete", "resourcequota", "no-jobs")
    cluster.wait_phase("supernettraining", "over-quota", "Pending")
    assert cluster.get("job", "over-quota-train") is not None
    assert "Traceback" not in operator.text()

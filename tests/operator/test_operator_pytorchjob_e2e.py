"""SupernetTraining on a cluster that serves Kubeflow's PyTorchJob: the operator must pick it
(discovery, no setting) and follow its conditions. The real training operator can't run here,
so a minimal kubeflow.org/v1 PyTorchJob CRD stands in for its API, and the test plays the
training operator by patching the PyTorchJob's status. A module of its own: its operator
process starts after the CRD exists (discovery is cached per process)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from support.operator_e2e import (
    Cluster,
    OperatorProcess,
    now,
    owned_by,
    service_account_kubeconfig,
    training,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

PYTORCHJOB_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "pytorchjobs.kubeflow.org"},
    "spec": {
        "group": "kubeflow.org",
        "names": {"kind": "PyTorchJob", "plural": "pytorchjobs", "singular": "pytorchjob"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


@pytest.fixture(scope="module")
def kubeflow_cluster(kube_cluster: Any) -> Iterator[Any]:
    from support.operator_e2e import CRDS

    kube_cluster.kubectl("apply", "--server-side", "-f", str(CRDS))
    kube_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(PYTORCHJOB_CRD))
    kube_cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    try:
        yield kube_cluster
    finally:
        kube_cluster.kubectl("delete", "crd", "pytorchjobs.kubeflow.org", "--wait=false")


@pytest.fixture(scope="module")
def cluster(kubeflow_cluster: Any) -> Cluster:
    ns = f"e2e-ptj-{secrets.token_hex(3)}"
    kubeflow_cluster.kubectl("create", "namespace", ns)
    return Cluster(kubeflow_cluster, ns)


@pytest.fixture(scope="module")
def operator(cluster: Cluster, tmp_path_factory: Any) -> Iterator[OperatorProcess]:
    work = tmp_path_factory.mktemp("operator-ptj")
    kubeconfig = service_account_kubeconfig(cluster.kube, cluster.ns, work / "kubeconfig")
    op = OperatorProcess(kubeconfig, cluster.ns, work / "operator.log")
    op.start()
    try:
        yield op
    finally:
        op.stop()
        print(op.text()[-5000:])


def _set_condition(cluster: Cluster, name: str, type_: str, message: str = "") -> None:
    cluster.patch_status(
        "pytorchjob",
        name,
        {
            "startTime": now(),
            "conditions": [
                {"type": type_, "status": "True", "reason": f"PyTorchJob{type_}",
                 "message": message, "lastUpdateTime": now(), "lastTransitionTime": now()},
            ],
        },
    )  # fmt: skip


def test_training_becomes_a_pytorchjob_and_follows_it(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    cluster.apply(training("st-ptj", workers=2, gpusPerWorker=8))
    cr = cluster.get("supernettraining", "st-ptj")
    assert cr is not None
    job = wait_for("PyTorchJob", lambda: cluster.get("pytorchjob", "st-ptj-train"))
    assert owned_by(job, cr)
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert set(replicas) == {"Master", "Worker"}
    assert replicas["Master"]["replicas"] + replicas["Worker"]["replicas"] == 2
    container = replicas["Master"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert "train" in container["command"] + container.get("args", [])
    assert cluster.get("job", "st-ptj-train") is None  # not an Indexed Job as well
    assert cluster.get("service", "st-ptj-rdzv") is None  # Kubeflow makes its own services
    st = cluster.wait_phase("supernettraining", "st-ptj", "Pending")
    assert st["backend"] == "PyTorchJob"

    _set_condition(cluster, "st-ptj-train", "Running")
    cluster.wait_phase("supernettraining", "st-ptj", "Running")
    _set_condition(cluster, "st-ptj-train", "Succeeded")
    st = cluster.wait_phase("supernettraining", "st-ptj", "Succeeded")
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds["Complete"] == "True" and conds["Failed"] == "False"


def test_failed_pytorchjob_fails_the_training_with_its_reason(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    cluster.apply(training("st-ptj-bad", workers=1, gpusPerWorker=1))
    wait_for("PyTorchJob", lambda: cluster.get("pytorchjob", "st-ptj-bad-train"))
    _set_condition(cluster, "st-ptj-bad-train", "Failed", "NCCL timeout on rank 3")
    st = cluster.wait_phase("supernettraining", "st-ptj-bad", "Failed")
    failed = next(c for c in st["conditions"] if c["type"] == "Failed")
    assert failed["status"] == "True" and "NCCL timeout" in failed["message"]

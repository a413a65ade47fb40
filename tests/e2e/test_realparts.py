"""The real parts the suite starts really work: control plane, garbage collection, helm, postgres."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from realparts.kube import KubeCluster
from realparts.postgres import PostgresServer

pytestmark = pytest.mark.e2e

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.realparts.gen5nas.test
spec:
  group: realparts.gen5nas.test
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 1}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
"""


def _poll(predicate: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def test_apiserver_answers_kubectl(kube_cluster: KubeCluster) -> None:
    version = json.loads(kube_cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["major"] == "1"
    assert version["serverVersion"]["gitVersion"].startswith("v1.")
    names = kube_cluster.kubectl("get", "ns", "-o", "name").stdout.split()
    assert "namespace/default" in names
    assert "namespace/kube-system" in names
    assert kube_cluster.env["KUBECONFIG"] == str(kube_cluster.kubeconfig)


def test_unauthenticated_requests_are_refused(kube_cluster: KubeCluster) -> None:
    bad = subprocess.run(
        [kube_cluster.kubectl_path, "--server", kube_cluster.server,
         "--certificate-authority", str(kube_cluster.ca_file), "--token", "wrong",
         "--kubeconfig", "/dev/null", "get", "ns"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert bad.returncode != 0
    assert "Unauthorized" in bad.stderr or "must be logged in" in bad.stderr


def test_crd_established_and_custom_objects_round_trip(kube_cluster: KubeCluster) -> None:
    kube_cluster.kubectl("apply", "-f", "-", input=CRD)
    kube_cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/widgets.realparts.gen5nas.test",
    )  # fmt: skip
    widget = (
        "apiVersion: realparts.gen5nas.test/v1\nkind: Widget\n"
        "metadata: {name: w1, namespace: default}\nspec: {size: 3}\n"
    )
    # Discovery of a fresh CRD can lag the Established condition by a moment.
    assert _poll(lambda: kube_cluster.kubectl("apply", "-f", "-", input=widget, check=False)
                 .returncode == 0, timeout=30)  # fmt: skip
    listed = json.loads(
        kube_cluster.kubectl("get", "widgets", "-n", "default", "-o", "json").stdout
    )
    assert [(i["metadata"]["name"], i["spec"]["size"]) for i in listed["items"]] == [("w1", 3)]
    # The schema is enforced by the real apiserver.
    bad = widget.replace("w1", "w2").replace("size: 3", "size: 0")
    res = kube_cluster.kubectl("apply", "-f", "-", input=bad, check=False)
    assert res.returncode != 0
    assert "spec.size" in res.stderr
    kube_cluster.kubectl("delete", "crd", "widgets.realparts.gen5nas.test", "--wait=false")


def test_garbage_collector_deletes_orphaned_dependents(kube_cluster: KubeCluster) -> None:
    if not kube_cluster.has_controller_manager:
        pytest.skip("kube-controller-manager was not built (build-control-plane.sh)")
    kube_cluster.kubectl("create", "configmap", "gc-owner", "-n", "default")
    uid = kube_cluster.kubectl(
        "get", "configmap", "gc-owner", "-n", "default", "-o", "jsonpath={.metadata.uid}"
    ).stdout.strip()
    assert uid
    child = json.dumps({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": "gc-child", "namespace": "default",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "gc-owner", "uid": uid}
            ],
        },
        "data": {"k": "v"},
    })  # fmt: skip
    kube_cluster.kubectl("apply", "-f", "-", input=child)
    kube_cluster.kubectl("delete", "configmap", "gc-owner", "-n", "default", "--wait=true")

    def child_gone() -> bool:
        res = kube_cluster.kubectl("get", "configmap", "gc-child", "-n", "default", check=False)
        return res.returncode != 0 and "NotFound" in res.stderr

    assert _poll(child_gone, timeout=90), "garbage collector never removed the dependent"


def test_job_controller_creates_pods(kube_cluster: KubeCluster) -> None:
    if not kube_cluster.has_controller_manager:
        pytest.skip("kube-controller-manager was not built (build-control-plane.sh)")
    job = json.dumps({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "realparts-job", "namespace": "default"},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox", "command": ["true"]}],
        }}},
    })  # fmt: skip
    kube_cluster.kubectl("apply", "-f", "-", input=job)

    def pod_created() -> bool:
        res = kube_cluster.kubectl(
            "get", "pods", "-n", "default", "-l", "job-name=realparts-job", "-o", "name"
        )
        return res.stdout.strip().startswith("pod/realparts-job-")

    # No kubelet or scheduler runs: the pod stays Pending, but the Job controller made it.
    assert _poll(pod_created, timeout=60), "Job controller never created the pod"
    kube_cluster.kubectl(
        "delete", "job", "realparts-job", "-n", "default", "--cascade=foreground", "--wait=false"
    )


def test_helm_version_and_lint(helm_bin: Path, tmp_path: Path) -> None:
    version = subprocess.run(
        [str(helm_bin), "version", "--short"], capture_output=True, text=True, check=True,
        timeout=30,
    )  # fmt: skip
    assert version.stdout.startswith("v3.")
    env = {"HOME": str(tmp_path), "HELM_CACHE_HOME": str(tmp_path / "cache"),
           "HELM_CONFIG_HOME": str(tmp_path / "config"), "HELM_DATA_HOME": str(tmp_path / "data")}  # fmt: skip
    subprocess.run(
        [str(helm_bin), "create", "tiny"], cwd=tmp_path, env=env, check=True, capture_output=True,
        timeout=30,
    )  # fmt: skip
    lint = subprocess.run(
        [str(helm_bin), "lint", "tiny"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in lint.stdout
    # A broken chart must fail lint: the check is real.
    (tmp_path / "tiny" / "Chart.yaml").write_text("apiVersion: v2\nname: tiny\n")
    broken = subprocess.run(
        [str(helm_bin), "lint", "tiny"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert broken.returncode != 0


def test_postgres_connects_and_databases_are_isolated(postgres_server: PostgresServer) -> None:
    import psycopg2

    assert postgres_server.dsn.startswith("postgresql+psycopg2://")
    first = postgres_server.new_database()
    second = postgres_server.new_database()
    assert first != second

    def libpq(url: str) -> str:
        return url.replace("postgresql+psycopg2://", "postgresql://", 1)

    conn = psycopg2.connect(libpq(first))
    try:
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE trials (id serial PRIMARY KEY, value double precision)")
            cur.execute("INSERT INTO trials (value) VALUES (0.5), (0.25)")
            cur.execute("SELECT sum(value) FROM trials")
            assert cur.fetchone() == (0.75,)
            cur.execute("SELECT version()")
            assert "PostgreSQL" in cur.fetchone()[0]
    finally:
        conn.close()

    conn = psycopg2.connect(libpq(second))
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('public.trials')")
            assert cur.fetchone() == (None,)
    finally:
        conn.close()


def test_postgres_rejects_wrong_password(postgres_server: PostgresServer) -> None:
    import psycopg2

    url = (
        f"postgresql://{postgres_server.user}:not-the-password@"
        f"{postgres_server.host}:{postgres_server.port}/postgres"
    )
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(url, connect_timeout=5)

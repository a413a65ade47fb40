"""The Helm chart against its own real control plane (etcd + kube-apiserver, one per module):
every rendered manifest passes server-side validation, the documented first steps (prerequisites,
install with the bundled PostgreSQL, the three examples) are accepted as written, and install,
upgrade, uninstall and reinstall keep and remove what the READMEs say."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from realparts.fixtures import control_plane_binaries
from realparts.kube import KubeCluster, start_kube_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "gen5nas"
EXAMPLES = ROOT / "examples"
EVERYTHING_ON = (
    "postgres.bundled.enabled=true", "dashboard.enabled=true",
    "metrics.serviceMonitor.enabled=true", "createWorkloadNamespaces=true",
    "resultsPvc.create=true", "datasetPvc.create=true",
)  # fmt: skip

# The parts of prometheus-operator's ServiceMonitor CRD the chart uses, with their real types,
# so that strict field validation rejects a misspelt or mistyped field.
SERVICE_MONITOR_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "scope": "Namespaced",
        "names": {"kind": "ServiceMonitor", "plural": "servicemonitors", "singular": "servicemonitor"},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {
                "type": "object", "required": ["selector"],
                "properties": {
                    "selector": {"type": "object", "properties": {
                        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
                    }},
                    "namespaceSelector": {"type": "object", "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    }},
                    "endpoints": {"type": "array", "items": {"type": "object", "properties": {
                        "port": {"type": "string"},
                        "path": {"type": "string"},
                        "interval": {"type": "string", "pattern": "^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"},
                    }}},
                },
            }}}},
        }],
    },
}  # fmt: skip


class Helm:
    """helm bound to the module's cluster, with its own cache and config folders."""

    def __init__(self, binary: Path, cluster: KubeCluster) -> None:
        self.binary = binary
        self.cluster = cluster
        self.env = {**cluster.env, "HELM_CACHE_HOME": str(cluster.workdir / "helm-cache"),
                    "HELM_CONFIG_HOME": str(cluster.workdir / "helm-config"),
                    "HELM_DATA_HOME": str(cluster.workdir / "helm-data")}  # fmt: skip

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [str(self.binary), *args, "--kubeconfig", str(self.cluster.kubeconfig)],
            capture_output=True, text=True, env=self.env, timeout=180, check=False,
        )  # fmt: skip
        if check:
            assert res.returncode == 0, f"helm {' '.join(args)}:\n{res.stdout}\n{res.stderr}"
        return res

    def install(self, verb: str, release: str, namespace: str, *sets: str) -> str:
        args = [verb, release, str(CHART), "--namespace", namespace, "--wait=false"]
        if verb == "install":
            args.append("--create-namespace")
        for s in sets:
            args += ["--set", s]
        return self(*args).stdout


@pytest.fixture(scope="module")
def cluster() -> Iterator[KubeCluster]:
    # No controller-manager: nothing here needs a controller, and its CPU is better spent elsewhere.
    with start_kube_cluster(controller_manager=False) as kube:
        kube.kubectl("apply", "--server-side", "-f", str(CHART / "crds"))
        kube.kubectl("apply", "-f", "-", input=json.dumps(SERVICE_MONITOR_CRD))
        kube.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        yield kube


@pytest.fixture(scope="module")
def helm(cluster: KubeCluster) -> Helm:
    return Helm(control_plane_binaries()["HELM"], cluster)


def secret_value(cluster: KubeCluster, namespace: str, name: str, key: str) -> str | None:
    res = cluster.kubectl("-n", namespace, "get", "secret", name, "-o", "json", check=False)
    if res.returncode != 0:
        return None
    return base64.b64decode(json.loads(res.stdout)["data"][key]).decode()


def exists(cluster: KubeCluster, *what: str) -> bool:
    return cluster.kubectl("get", *what, check=False).returncode == 0


@pytest.mark.parametrize(
    "sets",
    [(), EVERYTHING_ON, ("rbac.clusterWide=false", "watchNamespaces={team-a,team-b}",
                         "metrics.serviceMonitor.enabled=true", "dashboard.enabled=true")],
    ids=["defaults", "everything-on", "namespaced"],
)  # fmt: skip
def test_every_rendered_manifest_passes_server_side_validation(
    cluster: KubeCluster, helm: Helm, sets: tuple[str, ...]
) -> None:
    args = ["template", "g5", str(CHART), "--namespace", "gen5nas-system"]
    for s in sets:
        args += ["--set", s]
    docs = [d for d in yaml.safe_load_all(helm(*args).stdout) if d]
    # A dry run creates nothing, so the namespaces the manifests go into must exist already.
    for ns in {d["metadata"].get("namespace") for d in docs} - {None}:
        cluster.kubectl("create", "namespace", ns, check=False)
    res = cluster.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-",
        input=yaml.safe_dump_all(docs), check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("(server dry run)") == len(docs), res.stdout


def test_first_steps_as_documented(cluster: KubeCluster, helm: Helm) -> None:
    """README/NOTES order: prerequisites, the chart with its bundled PostgreSQL, the examples
    unchanged; then what `helm uninstall` leaves behind."""
    cluster.kubectl("apply", "-f", str(EXAMPLES / "prerequisites.yaml"))
    notes = helm.install("install", "gen5nas", "gen5nas-system", "postgres.bundled.enabled=true")
    # NOTES name the objects the examples use, in the order they are needed
    order = ["examples/prerequisites.yaml", "examples/supernettraining.yaml",
             "get supernettraining -w", "examples/nassearch.yaml", "get nassearch -w",
             "examples/subnetexport.yaml", "port-forward svc/gen5nas-dashboard"]  # fmt: skip
    positions = [notes.find(s) for s in order]
    assert -1 not in positions and positions == sorted(positions), notes
    for name in ("gen5nas-datasets", "gen5nas-results", "gen5nas-postgres"):
        assert f'"{name}"' in notes, name

    examples = [EXAMPLES / f"{k}.yaml" for k in ("supernettraining", "nassearch", "subnetexport")]
    docs = [yaml.safe_load(p.read_text()) for p in examples]
    for doc in docs:
        runtime = doc["spec"]["runtime"]
        assert doc["metadata"]["namespace"] == "nas"
        assert runtime["resultsPvc"] == "gen5nas-results"
        assert runtime["datasetPvc"] == "gen5nas-datasets"
        assert exists(cluster, "-n", "nas", "pvc", runtime["datasetPvc"])
        assert exists(cluster, "-n", "nas", "pvc", runtime["resultsPvc"])
    storage = docs[1]["spec"]["storage"]
    dsn = secret_value(cluster, "nas", storage["secretName"], storage["secretKey"])
    password = secret_value(cluster, "gen5nas-system", "gen5nas-postgresql", "password")
    assert password and len(password) == 32
    assert dsn == (
        f"postgresql+psycopg2://gen5nas:{password}@gen5nas-postgresql.gen5nas-system.svc:5432/optuna"
    )
    for path in examples:
        cluster.kubectl("apply", "--validate=strict", "-f", str(path))

    helm("uninstall", "gen5nas", "--namespace", "gen5nas-system")
    # gone: what the release made, but what it keeps on purpose
    for what in (("deployment", "gen5nas"), ("statefulset", "gen5nas-postgresql"),
                 ("service", "gen5nas-metrics"), ("serviceaccount", "gen5nas")):  # fmt: skip
        assert not exists(cluster, "-n", "gen5nas-system", *what), what
    assert not exists(cluster, "clusterrole", "gen5nas")
    assert secret_value(cluster, "nas", "gen5nas-postgres", "dsn") is None
    # kept: CRDs, the resources, the user's PVCs, and the database password
    for crd in ("supernettrainings", "nassearches", "subnetexports"):
        assert exists(cluster, "crd", f"{crd}.gen5nas.io")
    for doc in docs:
        assert exists(cluster, "-n", "nas", doc["kind"].lower(), doc["metadata"]["name"])
    assert exists(cluster, "-n", "nas", "pvc", "gen5nas-results")
    assert secret_value(cluster, "gen5nas-system", "gen5nas-postgresql", "password") == password
    # removing the rest, as the README says
    cluster.kubectl("-n", "nas", "delete", "supernettraining,nassearch,subnetexport", "--all")
    cluster.kubectl("-n", "gen5nas-system", "delete", "secret", "gen5nas-postgresql")


def test_install_upgrade_uninstall_reinstall(cluster: KubeCluster, helm: Helm) -> None:
    sets = (*EVERYTHING_ON, "workloadNamespaces={team-z}")
    helm.install("install", "g5", "g5-system", *sets)
    dep = json.loads(
        cluster.kubectl("-n", "g5-system", "get", "deploy", "g5-gen5nas", "-o", "json").stdout
    )
    env = {
        e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["GEN5NAS_FRONT_TOP"] == "10"
    password = secret_value(cluster, "g5-system", "g5-gen5nas-postgresql", "password")
    dsn = secret_value(cluster, "team-z", "gen5nas-postgres", "dsn")
    # the dashboard reads the same DSN in the release namespace
    assert secret_value(cluster, "g5-system", "gen5nas-postgres", "dsn") == dsn
    assert password and dsn and password in dsn
    for pvc in ("gen5nas-results", "gen5nas-datasets"):
        assert exists(cluster, "-n", "team-z", "pvc", pvc)

    helm.install("upgrade", "g5", "g5-system", *sets, "operator.frontTop=20")
    dep = json.loads(
        cluster.kubectl("-n", "g5-system", "get", "deploy", "g5-gen5nas", "-o", "json").stdout
    )
    env = {
        e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["GEN5NAS_FRONT_TOP"] == "20"
    # an upgrade keeps the generated password, so the database and the DSNs still agree
    assert secret_value(cluster, "g5-system", "g5-gen5nas-postgresql", "password") == password
    assert secret_value(cluster, "team-z", "gen5nas-postgres", "dsn") == dsn

    manifest = helm("get", "manifest", "g5", "--namespace", "g5-system").stdout
    installed = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"])
                 for d in yaml.safe_load_all(manifest) if d]  # fmt: skip
    kept = {("Namespace", None, "team-z"), ("PersistentVolumeClaim", "team-z", "gen5nas-results"),
            ("PersistentVolumeClaim", "team-z", "gen5nas-datasets"),
            ("Secret", "g5-system", "g5-gen5nas-postgresql")}  # fmt: skip
    assert kept <= set(installed)
    helm("uninstall", "g5", "--namespace", "g5-system")
    for kind, ns, name in installed:
        where = ["-n", ns] if ns else []
        assert exists(cluster, *where, kind, name) == ((kind, ns, name) in kept), (kind, ns, name)
    for crd in ("supernettrainings", "nassearches", "subnetexports"):
        assert exists(cluster, "crd", f"{crd}.gen5nas.io")

    # a reinstall adopts what was kept and reuses the password the database was created with
    helm.install("install", "g5", "g5-system", *sets)
    assert secret_value(cluster, "g5-system", "g5-gen5nas-postgresql", "password") == password
    assert secret_value(cluster, "team-z", "gen5nas-postgres", "dsn") == dsn
    helm("uninstall", "g5", "--namespace", "g5-system")

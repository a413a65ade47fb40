"""The Helm chart: lint, the values schema, template (cluster-wide and namespaced RBAC, the
operator pod's hardening, the bundled PostgreSQL, the dashboard, metrics), the RBAC it renders
is the one in operator/rbac/, and `helm install` against the real test control plane
(install/upgrade/uninstall in detail: tests/e2e/test_chart_install.py)."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "gen5nas"


def helm(helm_bin: Path, *args: str, env: dict[str, str] | None = None) -> str:
    res = subprocess.run(
        [str(helm_bin), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert res.returncode == 0, f"helm {' '.join(args)}:\n{res.stdout}\n{res.stderr}"
    return res.stdout


def template(helm_bin: Path, *sets: str) -> subprocess.CompletedProcess[str]:
    args = ["template", "g5", str(CHART), "--namespace", "gen5nas-system"]
    for s in sets:
        args += ["--set", s]
    return subprocess.run(
        [str(helm_bin), *args], capture_output=True, text=True, timeout=120, check=False
    )


def render(helm_bin: Path, *sets: str) -> list[dict[str, Any]]:
    res = template(helm_bin, *sets)
    assert res.returncode == 0, f"helm template {sets}:\n{res.stderr}"
    return [d for d in yaml.safe_load_all(res.stdout) if d]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


EVERYTHING_ON = (
    "postgres.bundled.enabled=true,dashboard.enabled=true,metrics.serviceMonitor.enabled=true,"
    "createWorkloadNamespaces=true,resultsPvc.create=true,datasetPvc.create=true"
)


@pytest.mark.parametrize("sets", [(), ("--set", EVERYTHING_ON)], ids=["defaults", "everything-on"])
def test_helm_lint_is_clean(helm_bin: Path, sets: tuple[str, ...]) -> None:
    out = helm(helm_bin, "lint", "--strict", str(CHART), *sets)
    assert "0 chart(s) failed" in out and "[WARNING]" not in out and "[ERROR]" not in out


def test_template_cluster_wide(helm_bin: Path) -> None:
    docs = render(helm_bin)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "ServiceAccount"]
    dep = next(d for d in docs if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["GEN5NAS_NAMESPACES"] == "" and env["GEN5NAS_DSN_SECRET"] == "gen5nas-postgres"
    assert env["GEN5NAS_RESULTS_PVC"] == "gen5nas-results"
    assert dep["spec"]["strategy"]["type"] == "Recreate" and dep["spec"]["replicas"] == 1
    assert pod["containers"][0]["image"] == "ghcr.io/gen5nas/operator:0.1.0"


def test_template_namespaced(helm_bin: Path) -> None:
    docs = render(
        helm_bin, "rbac.clusterWide=false", "watchNamespaces={team-a,team-b}",
        "resultsPvc.create=true", "postgres.secretName=pg",
    )  # fmt: skip
    roles = [d for d in docs if d["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert not [d for d in docs if d["kind"].startswith("Cluster")]
    dep = next(d for d in docs if d["kind"] == "Deployment")
    env = {e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["GEN5NAS_NAMESPACES"] == "team-a,team-b" and env["GEN5NAS_DSN_SECRET"] == "pg"
    pvcs = [d["metadata"] for d in docs if d["kind"] == "PersistentVolumeClaim"]
    assert [(m["namespace"], m["name"]) for m in pvcs] == [("nas", "gen5nas-results")]


BAD_VALUES = [
    ("operator.frontTop=0", "/operator/frontTop", "minimum"),
    ("operator.trainingBackend=slurm", "/operator/trainingBackend", "'indexedjob'"),
    ("postgress.secretName=x", "'postgress' not allowed", "additional properties"),
    ("resultsPvc.size=lots", "/resultsPvc/size", "'lots'"),
    ("watchNamespaces={Team_A}", "/watchNamespaces/0", "'Team_A'"),
    ("metrics.operatorPort=70000", "/metrics/operatorPort", "maximum"),
    ("dashboard.enabled=yes", "/dashboard/enabled", "want boolean"),
    ("postgres.bundled.username=drop;table", "/postgres/bundled/username", "pattern"),
    ("image.pullPolicy=Sometimes", "/image/pullPolicy", "'IfNotPresent'"),
    ("metrics.serviceMonitor.interval=often", "/metrics/serviceMonitor/interval", "'often'"),
    ("policy.allowedImagePrefixes={ghcr.io/team}", "/policy/allowedImagePrefixes/0", "pattern"),
    ("policy.mountRoots={data}", "/policy/mountRoots/0", "pattern"),
    ("policy.allowedPvcLabel=nolabelvalue", "/policy/allowedPvcLabel", "pattern"),
    (
        "policy.allowedTolerations[0].effect=Sometimes",
        "/policy/allowedTolerations/0/effect",
        "'NoSchedule'",
    ),
]


@pytest.mark.parametrize(("value", "path", "why"), BAD_VALUES, ids=[v for v, *_ in BAD_VALUES])
def test_a_wrong_value_fails_naming_it(helm_bin: Path, value: str, path: str, why: str) -> None:
    res = template(helm_bin, value)
    assert res.returncode != 0
    assert "don't meet the specifications of the schema" in res.stderr, res.stderr
    assert path in res.stderr and why in res.stderr, res.stderr


def test_operator_pod_is_locked_down_and_observable(helm_bin: Path) -> None:
    dep = one(render(helm_bin), "Deployment", "g5-gen5nas")
    pod = dep["spec"]["template"]
    (c,) = pod["spec"]["containers"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }  # fmt: skip
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    assert "--liveness=http://0.0.0.0:8080/healthz" in c["args"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert pod["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true", "prometheus.io/port": "9090", "prometheus.io/path": "/metrics",
    }  # fmt: skip
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["GEN5NAS_METRICS_PORT"] == "9090" and env["GEN5NAS_ESTIMATOR_METRICS_PORT"] == "9464"


def test_bundled_postgres_writes_one_dsn_everywhere(helm_bin: Path) -> None:
    assert not [d for d in render(helm_bin) if d["kind"] in ("StatefulSet", "Secret")]
    docs = render(
        helm_bin, "postgres.bundled.enabled=true", "workloadNamespaces={team-a,team-b}",
        "dashboard.enabled=true",
    )  # fmt: skip
    sts = one(docs, "StatefulSet", "g5-gen5nas-postgresql")
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e for e in c["env"]}
    ref = {"name": "g5-gen5nas-postgresql", "key": "password"}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == ref
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
    password_secret = one(docs, "Secret", "g5-gen5nas-postgresql")
    assert password_secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    password = base64.b64decode(password_secret["data"]["password"]).decode()
    dsn_secrets = [
        d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "gen5nas-postgres"
    ]
    # the workload namespaces, and the release's for the dashboard
    assert sorted(d["metadata"]["namespace"] for d in dsn_secrets) == [
        "gen5nas-system",
        "team-a",
        "team-b",
    ]
    dsns = {base64.b64decode(d["data"]["dsn"]).decode() for d in dsn_secrets}
    assert dsns == {
        f"postgresql+psycopg2://gen5nas:{password}@g5-gen5nas-postgresql.gen5nas-system.svc:5432/optuna"
    }
    # the dashboard takes the DSN from the Secret through the kubelet's $(VAR) expansion
    (dash,) = one(docs, "Deployment", "g5-gen5nas-dashboard")["spec"]["template"]["spec"][
        "containers"
    ]
    assert dash["args"][0] == "$(OPTUNA_STORAGE)"
    (storage,) = [e for e in dash["env"] if e["name"] == "OPTUNA_STORAGE"]
    assert storage["valueFrom"]["secretKeyRef"] == {"name": "gen5nas-postgres", "key": "dsn"}
    assert one(docs, "Service", "g5-gen5nas-dashboard")["spec"]["ports"][0]["targetPort"] == "http"


def test_service_monitors_scrape_named_metrics_ports(helm_bin: Path) -> None:
    assert not [d for d in render(helm_bin) if d["kind"] == "ServiceMonitor"]
    docs = render(
        helm_bin, "metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=kps"
    )
    operator_sm = one(docs, "ServiceMonitor", "g5-gen5nas-operator")
    svc = one(docs, "Service", "g5-gen5nas-metrics")
    assert operator_sm["metadata"]["labels"]["release"] == "kps"
    sel = operator_sm["spec"]["selector"]["matchLabels"]
    assert sel.items() <= svc["metadata"]["labels"].items()
    assert [e["port"] for e in operator_sm["spec"]["endpoints"]] == [
        p["name"] for p in svc["spec"]["ports"]
    ]
    estimator_sm = one(docs, "ServiceMonitor", "g5-gen5nas-estimator")
    assert estimator_sm["spec"]["namespaceSelector"] == {"any": True}
    assert (
        estimator_sm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        == "estimator"
    )
    assert estimator_sm["spec"]["endpoints"][0]["port"] == "metrics"
    namespaced = render(
        helm_bin, "metrics.serviceMonitor.enabled=true", "rbac.clusterWide=false",
        "watchNamespaces={team-a}",
    )  # fmt: skip
    sel = one(namespaced, "ServiceMonitor", "g5-gen5nas-estimator")["spec"]["namespaceSelector"]
    assert sel == {"matchNames": ["team-a"]}


def test_rbac_rules_agree_everywhere(helm_bin: Path) -> None:
    chart_rules = yaml.safe_load((CHART / "files" / "operator-rules.yaml").read_text())
    rendered = next(d for d in render(helm_bin) if d["kind"] == "ClusterRole")["rules"]
    assert rendered == chart_rules
    for name, kind in (("clusterrole.yaml", "ClusterRole"), ("role.yaml", "Role")):
        docs = list(yaml.safe_load_all((ROOT / "operator" / "rbac" / name).read_text()))
        assert next(d for d in docs if d["kind"] == kind)["rules"] == chart_rules
    # least privilege: no wildcards, no update/delete on the custom resources
    for rule in chart_rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
    cr_rule = chart_rules[0]
    assert set(cr_rule["verbs"]) == {"get", "list", "watch", "patch"}


@pytest.mark.e2e
def test_helm_install_on_the_test_control_plane(helm_bin: Path, kube_cluster: Any) -> None:
    env = {**kube_cluster.env, "HELM_CACHE_HOME": str(kube_cluster.workdir / "helm-cache"),
           "HELM_CONFIG_HOME": str(kube_cluster.workdir / "helm-config")}  # fmt: skip
    helm(helm_bin, "install", "g5", str(CHART), "--namespace", "gen5nas-system",
         "--create-namespace", "--kubeconfig", str(kube_cluster.kubeconfig), env=env)  # fmt: skip
    try:
        for crd in ("nassearches", "supernettrainings", "subnetexports"):
            kube_cluster.kubectl("get", "crd", f"{crd}.gen5nas.io")
        dep = json.loads(
            kube_cluster.kubectl(
                "get", "deployment", "g5-gen5nas", "-n", "gen5nas-system", "-o", "json"
            ).stdout
        )
        assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "g5-gen5nas"
        # the operator's identity may do what it needs, and no more
        sa = "system:serviceaccount:gen5nas-system:g5-gen5nas"

        def can(*a):
            return kube_cluster.kubectl("auth", "can-i", *a, "--as", sa, check=False).stdout.strip()

        assert can("patch", "nassearches.gen5nas.io/status", "-n", "x") == "yes"
        assert can("create", "jobs.batch", "-n", "x") == "yes"
        assert can("get", "secrets", "-n", "x") == "yes"
        assert can("list", "secrets", "-n", "x") == "no"
        assert can("delete", "jobs.batch", "-n", "x") == "no"
        # the training pods' identity: made per namespace; patching pods is held only because
        # RBAC lets no one grant what they lack (no escalate/bind instead)
        for verb, what in (
            ("create", "serviceaccounts"),
            ("create", "roles.rbac.authorization.k8s.io"),
            ("create", "rolebindings.rbac.authorization.k8s.io"),
            ("patch", "pods"),
        ):
            assert can(verb, what, "-n", "x") == "yes", (verb, what)
        for verb, what in (
            ("escalate", "roles.rbac.authorization.k8s.io"),
            ("bind", "roles.rbac.authorization.k8s.io"),
            ("delete", "pods"),
            ("update", "roles.rbac.authorization.k8s.io"),
            ("create", "pods"),
        ):
            assert can(verb, what, "-n", "x") == "no", (verb, what)
    finally:
        helm(helm_bin, "uninstall", "g5", "--namespace", "gen5nas-system",
             "--kubeconfig", str(kube_cluster.kubeconfig), env=env)  # fmt: skip


def test_the_operator_gets_the_policy_with_the_charts_pvcs(helm_bin: Path) -> None:
    """GEN5NAS_POLICY is the values' policy, the chart's two PVCs allowed besides its list, and
    the operator reads it (the same parse the operator's startup does)."""
    from gen5nas_operator.settings import Settings

    sets = ("resultsPvc.name=out", "datasetPvc.name=imagenet", "policy.allowedPvcs={scratch,out}")
    dep = one(render(helm_bin, *sets), "Deployment", "g5-gen5nas")
    env = {e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    policy = Settings.from_env(env).policy
    assert policy.allowed_pvcs == ["out", "imagenet", "scratch"]
    assert policy.allowed_image_prefixes == ["ghcr.io/gen5nas/"]
    assert policy.mount_roots == ["/data", "/results"]
    assert [t.key for t in policy.allowed_tolerations] == ["nvidia.com/gpu"]

"""The Helm chart: lint, template (cluster-wide and namespaced RBAC), the RBAC it renders is
the one in operator/rbac/, and `helm install` against the real test control plane."""

from __future__ import annotations

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


def render(helm_bin: Path, *sets: str) -> list[dict[str, Any]]:
    args = ["template", "g5", str(CHART), "--namespace", "gen5nas-system"]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(helm(helm_bin, *args)) if d]


def test_helm_lint_is_clean(helm_bin: Path) -> None:
    out = helm(helm_bin, "lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in out


def test_template_cluster_wide(helm_bin: Path) -> None:
    docs = render(helm_bin)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "ServiceAccount"]
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
    assert any(d["kind"] == "PersistentVolumeClaim" for d in docs)


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

"""Operator tests' end-to-end fixtures (helpers in ``support.operator_e2e``): the CRDs applied to
the real kube-apiserver, a fresh namespace, the operator process, a watch per kind, and the study
DSN's Secret."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.operator_e2e import (
    CRDS,
    Cluster,
    History,
    OperatorProcess,
    service_account_kubeconfig,
)


# ---- e2e fixtures (module-scoped: one namespace and operator per test module) ------------------------------------------------------------------------------
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


@pytest.fixture(scope="module")
def operator(crds: Any, namespace: str, tmp_path_factory: Any) -> Iterator[OperatorProcess]:
    work = tmp_path_factory.mktemp("operator")
    kubeconfig = service_account_kubeconfig(crds, namespace, work / "kubeconfig")
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

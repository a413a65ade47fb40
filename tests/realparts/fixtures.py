"""pytest fixtures for the real parts; tests/conftest.py re-exports them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .kube import KubeCluster, control_plane_binaries, start_kube_cluster
from .postgres import PostgresServer, start_postgres


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[KubeCluster]:
    """etcd + kube-apiserver (+ kube-controller-manager when built) for the whole session."""
    with start_kube_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    """Path of the helm binary built by scripts/build-control-plane.sh."""
    return control_plane_binaries()["HELM"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session; use .new_database() per test."""
    with start_postgres() as server:
        yield server

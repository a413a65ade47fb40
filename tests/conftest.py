"""Shared pytest configuration. Fixtures live in topic modules and are re-exported here."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

# Real external parts (etcd/kube-apiserver/kube-controller-manager, helm, PostgreSQL).
from realparts.fixtures import helm_bin, kube_cluster, postgres_server  # noqa: E402

__all__ = ["helm_bin", "kube_cluster", "postgres_server"]

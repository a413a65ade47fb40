"""Shared pytest configuration. Fixtures live in topic modules and are re-exported here."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

# Real external parts (etcd/kube-apiserver/kube-controller-manager, helm, PostgreSQL).
import pytest  # noqa: E402
from realparts.fixtures import helm_bin, kube_cluster, postgres_server  # noqa: E402

__all__ = [
    "checkpoint",
    "digits",
    "helm_bin",
    "kube_cluster",
    "postgres_server",
    "single_thread",
]


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled handwritten-digits dataset as an ImageFolder tree, written once a session."""
    from gen5nas.data import write_digits

    return write_digits(tmp_path_factory.getbasetemp() / "digits")


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly initialised tiny-space supernet saved through the checkpoint API."""
    from support.export import save_supernet

    return save_supernet(tmp_path_factory.mktemp("ckpt") / "epoch_1.pth")


@pytest.fixture
def single_thread() -> Iterator[None]:
    """One intra-op thread for the test, restored after it."""
    from support.threads import one_thread

    with one_thread():
        yield

"""Rank 0's progress annotation against a real kube-apiserver: written with the service account
the operator gives training pods (its Role is the operator's own builder's), read back by the
operator's parser, throttled, and best-effort (403 or no API server: one warning, no exception);
and a tiny real training run reporting every epoch on its pod."""

from __future__ import annotations

import json
import logging
import secrets
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from realparts._proc import free_port
from support.train import tiny_spec

from gen5nas.data import write_synthetic
from gen5nas.spec.training import SupernetTrainingSpec
from gen5nas.train import progress_report as pr
from gen5nas.train.job import run_supernet_training
from gen5nas_operator.kinds.training.children import WORKLOAD_SERVICE_ACCOUNT, workload_identity
from gen5nas_operator.kinds.training.status import training_progress

LOGGER = "gen5nas.train.progress_report"


class Clock:
    """A monotonic clock the test moves by hand (the throttle and the back-off read it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pod(kube_cluster: Any) -> tuple[str, str]:
    """A Pod object in a fresh namespace (no kubelet: it never runs) and the namespace's
    workload identity, as the operator makes it."""
    ns = f"progress-{secrets.token_hex(3)}"
    kube_cluster.kubectl("create", "namespace", ns)
    kube_cluster.kubectl(
        "apply", "-f", "-", input=yaml.safe_dump_all(workload_identity(ns))
    )  # fmt: skip
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "st-train-0-abcde", "namespace": ns},
        "spec": {
            "serviceAccountName": WORKLOAD_SERVICE_ACCOUNT,
            "containers": [{"name": "main", "image": "reg/workload:1"}],
        },
    }
    kube_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
    return ns, "st-train-0-abcde"


def pod_env(
    kube: Any, tmp_path: Path, namespace: str, pod: str, account: str, server: str | None = None
) -> dict[str, str]:
    """What the pod's process sees: downward-API names, the in-cluster API address and the
    mounted service-account token + CA (written where GEN5NAS_SERVICEACCOUNT_DIR points)."""
    sa_dir = tmp_path / f"sa-{account}"
    sa_dir.mkdir()
    token = kube.kubectl("create", "token", account, "-n", namespace).stdout.strip()
    (sa_dir / "token").write_text(token + "\n")
    shutil.copyfile(kube.ca_file, sa_dir / "ca.crt")
    url = urlsplit(server or kube.server)
    return {
        pr.POD_NAME_ENV: pod,
        pr.POD_NAMESPACE_ENV: namespace,
        "KUBERNETES_SERVICE_HOST": str(url.hostname),
        "KUBERNETES_SERVICE_PORT": str(url.port),
        pr.SA_DIR_ENV: str(sa_dir),
    }


def annotation(kube: Any, namespace: str, pod: str) -> dict[str, Any] | None:
    got = json.loads(kube.kubectl("get", "pod", pod, "-n", namespace, "-o", "json").stdout)
    raw = (got["metadata"].get("annotations") or {}).get(pr.ANNOTATION)
    return None if raw is None else json.loads(raw)


def reporter(env: dict[str, str], clock: Clock | None = None) -> pr.ProgressReporter:
    rep = pr.ProgressReporter.from_env(env)
    assert rep is not None
    if clock is not None:
        rep.clock = clock
    return rep


@pytest.mark.e2e
def test_the_workload_account_writes_what_the_operator_reads_throttled(
    kube_cluster: Any, pod: tuple[str, str], tmp_path: Path
) -> None:
    ns, name = pod
    clock = Clock()
    rep = reporter(pod_env(kube_cluster, tmp_path, ns, name, WORKLOAD_SERVICE_ACCOUNT), clock)
    assert rep.report(1, 10, 500, 71.23456, 60.4, "accuracy/top1", force=True)
    doc = annotation(kube_cluster, ns, name)
    assert doc is not None
    assert {k: v for k, v in doc.items() if k != "updated"} == {
        "epoch": 1, "epochs": 10, "iteration": 500, "metric": "accuracy/top1", "maxScore": 71.23,
        "minScore": 60.4,
    }  # fmt: skip
    # the operator copies it into status.progress as it is
    assert training_progress(json.dumps(doc)) == doc

    clock.now += pr.MIN_INTERVAL_S / 2  # mid-epoch reports are throttled...
    assert not rep.report(1, 10, 550, 71.2, 60.4)
    assert annotation(kube_cluster, ns, name)["iteration"] == 500
    assert rep.report(2, 10, 560, force=True)  # ...an epoch's end is not
    doc = annotation(kube_cluster, ns, name)
    assert (doc["epoch"], doc["iteration"]) == (2, 560) and "maxScore" not in doc
    clock.now += pr.MIN_INTERVAL_S
    assert rep.report(2, 10, 600)
    assert annotation(kube_cluster, ns, name)["iteration"] == 600


@pytest.mark.e2e
def test_forbidden_or_unreachable_warns_once_and_never_raises(
    kube_cluster: Any, pod: tuple[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ns, name = pod
    kube_cluster.kubectl("create", "serviceaccount", "nobody", "-n", ns)  # bound to no Role
    clock = Clock()
    rep = reporter(pod_env(kube_cluster, tmp_path, ns, name, "nobody"), clock)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert not rep.report(1, 10, 5, force=True)
        clock.now += pr.BACKOFF_S[0] / 2  # backing off: not even tried
        assert not rep.report(2, 10, 10, force=True)
        clock.now += pr.BACKOFF_S[0]
        assert not rep.report(3, 10, 15, force=True)  # tried again, refused again
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "HTTP 403" in warnings[0].getMessage(), caplog.text
    assert f"{ns}/{name}" in warnings[0].getMessage()
    assert len([r for r in caplog.records if r.name == LOGGER]) == 2
    assert annotation(kube_cluster, ns, name) is None

    caplog.clear()
    dead = f"https://127.0.0.1:{free_port()}"
    env = pod_env(kube_cluster, tmp_path, ns, name, WORKLOAD_SERVICE_ACCOUNT, server=dead)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert not reporter(env).report(1, 10, 5, force=True)
    assert len(caplog.records) == 1 and "could not report" in caplog.text


def test_outside_a_pod_there_is_no_reporter() -> None:
    full = {
        pr.POD_NAME_ENV: "p", pr.POD_NAMESPACE_ENV: "ns",
        "KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443",
    }  # fmt: skip
    rep = pr.ProgressReporter.from_env(full)
    assert rep is not None and rep.server == "https://[fd00::1]:443"
    assert rep.token_file == Path(pr.SA_DIR) / "token"
    for missing in full:
        assert pr.ProgressReporter.from_env({k: v for k, v in full.items() if k != missing}) is None


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_a_training_run_reports_every_epoch_on_its_pod(
    kube_cluster: Any,
    pod: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ns, name = pod
    for key, value in pod_env(kube_cluster, tmp_path, ns, name, WORKLOAD_SERVICE_ACCOUNT).items():
        monkeypatch.setenv(key, value)
    data = write_synthetic(tmp_path / "data", num_classes=4, train_per_class=8, val_per_class=3)
    spec = SupernetTrainingSpec.model_validate(tiny_spec(data, schedule={"epochs": 2}))
    result = run_supernet_training(spec, tmp_path / "work", device="cpu")
    doc = annotation(kube_cluster, ns, name)
    assert doc is not None
    assert (doc["epoch"], doc["epochs"], doc["iteration"]) == (2, 2, result.iterations)
    assert doc["metric"] == "accuracy/top1"  # the task's Metric.label
    assert doc["maxScore"] == float(f"{result.metrics['max/accuracy_top1']:.4g}")
    assert doc["minScore"] == float(f"{result.metrics['min/accuracy_top1']:.4g}")

"""``reconcile.run`` per kind against an in-memory API server and a real (SQLite) Optuna study.

Only the API server's REST surface is faked (``MemoryKube._call``); everything above it is the
real ``Kube`` (create's 409 handling, Secret decoding, listing by label). The tests play the
kubelet by writing Job and Pod status. The e2e tests cover the same paths on a real API server.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import logging
import subprocess
import sys
import threading
import uuid
from itertools import count
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from support.operator_study import outputs_attr, sample_arch, trial_user_attrs, write_study

from gen5nas.search.study import DIRECTIONS, open_storage
from gen5nas.spec.common import GROUP_VERSION
from gen5nas_operator import reconcile as r
from gen5nas_operator import resync, termination
from gen5nas_operator.common.conditions import FAILED, PENDING, RUNNING, SUCCEEDED, WAITING
from gen5nas_operator.kube import PLURALS, Kube, path
from gen5nas_operator.policy import Policy
from gen5nas_operator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
NS = "team-a"
# An administrator who lets resources run as their own account "x" (the workload identity test)
# and name the DSN Secrets "db" and "db2".
SETTINGS = Settings(policy=Policy(allowedServiceAccounts=["x"], allowedDsnSecrets=["db", "db2"]))


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch, as the API server applies application/merge-patch+json."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


class MemoryKube(Kube):
    """Objects by collection path, answered the way the API server answers: 404 for a missing
    object, 409 for a name taken, a uid on create, ``generateName``, lists in one namespace or
    all. Discovery serves no Kubeflow API. ``fail`` holds URLs that answer 500 (an API server
    hiccup); ``calls`` records (method, url)."""

    def __init__(self) -> None:
        super().__init__(api=None)  # type: ignore[arg-type]
        self.objects: dict[str, dict[str, dict[str, Any]]] = {}
        self.fail: set[str] = set()
        self.calls: list[tuple[str, str]] = []
        self._clock = count()
        self._mutex = threading.Lock()  # the resync loop calls from a worker thread

    def _call(
        self,
        method: str,
        url: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        with self._mutex:
            self.calls.append((method, url))
            if url in self.fail:
                raise ApiException(status=500, reason="injected")
            return self._answer(method, url, body, dict(query or []), content_type)

    def _answer(
        self, method: str, url: str, body: Any, query: dict[str, str], content_type: str
    ) -> Any:
        if method == "GET" and url.rpartition("/")[2] in PLURALS.values():  # a list
            if "/namespaces/" in url:
                colls = [self.objects.get(url, {})]
            else:  # every namespace: /apis/<group>/<version>/<plural>
                base, _, plural = url.rpartition("/")
                colls = [
                    c for u, c in self.objects.items()
                    if u.startswith(f"{base}/namespaces/") and u.endswith(f"/{plural}")
                ]  # fmt: skip
            selector = query.get("labelSelector")
            wanted = dict(t.split("=", 1) for t in selector.split(",")) if selector else {}
            return {
                "items": [
                    copy.deepcopy(o) for c in colls for o in c.values()
                    if wanted.items() <= (o["metadata"].get("labels") or {}).items()
                ]
            }  # fmt: skip
        if "/namespaces/" not in url:  # discovery
            raise ApiException(status=404)
        if method == "POST":
            coll = self.objects.setdefault(url, {})
            obj = copy.deepcopy(body)
            meta = obj["metadata"]
            if "name" not in meta:
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            if meta["name"] in coll:
                raise ApiException(status=409)
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", f"2025-01-01T00:00:{next(self._clock):02d}Z")
            coll[meta["name"]] = obj
            return copy.deepcopy(obj)
        coll_url, _, name = url.removesuffix("/status").rpartition("/")
        obj = self.objects.get(coll_url, {}).get(name)
        if obj is None:
            raise ApiException(status=404)
        if method == "PATCH":
            assert content_type == "application/merge-patch+json"
            _merge(obj, body)
        elif method == "DELETE":
            del self.objects[coll_url][name]
        return copy.deepcopy(obj)

    # ---- the tests' hands ----
    def names(self, api_version: str, kind: str) -> list[str]:
        return sorted(self.objects.get(path(api_version, kind, NS), {}))

    def put_status(self, api_version: str, kind: str, name: str, status: dict[str, Any]) -> None:
        self.patch(api_version, kind, NS, name, {"status": status})


@pytest.fixture
def kube() -> MemoryKube:
    return MemoryKube()


@pytest.fixture
def dsn(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/studies.db"


def add_secret(kube: Kube, dsn: str, name: str = "gen5nas-postgres", key: str = "dsn") -> None:
    data = {key: base64.b64encode(dsn.encode()).decode()}
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": NS},
            "data": data,
        }
    )


def add_cr(
    kube: Kube, kind: str, name: str, spec: dict[str, Any], status: dict | None = None
) -> None:
    doc: dict[str, Any] = {
        "apiVersion": GROUP_VERSION, "kind": kind,
        "metadata": {"name": name, "namespace": NS, "generation": 1}, "spec": spec,
    }  # fmt: skip
    if status:
        doc["status"] = status
    kube.create(doc)


def reconcile(kube: Kube, kind: str, name: str) -> r.Outcome:
    """One sync as the kopf handlers and the resync loop run it: read the CR, reconcile, post
    events, patch its status."""
    outcome = resync.sync(kube, SETTINGS, kind, NS, name)
    assert outcome is not None
    return outcome


def cond(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return {c["type"]: c for c in st["conditions"]}[type_]


def job_complete(kube: MemoryKube, name: str) -> None:
    kube.put_status("batch/v1", "Job", name, {
        "startTime": "t0", "completionTime": "t1", "succeeded": 1, "active": 0,
        "conditions": [{"type": "Complete", "status": "True"}],
    })  # fmt: skip


def job_failed(kube: MemoryKube, name: str, message: str) -> None:
    kube.put_status("batch/v1", "Job", name, {"failed": 1, "conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": message}
    ]})  # fmt: skip


def search_spec(**extra: Any) -> dict[str, Any]:
    return {
        "checkpoint": "/results/team-a/st",
        "dataset": {"kind": "digits"},
        "maxTrials": 4,
        **extra,
    }


# ---- NASSearch ---------------------------------------------------------------------------------
def test_search_waits_for_its_secret_and_makes_nothing(kube: MemoryKube, dsn: str) -> None:
    add_cr(kube, "NASSearch", "nas", search_spec(storage={"secretName": "db", "secretKey": "url"}))
    out = reconcile(kube, "NASSearch", "nas")
    assert out.status["phase"] == WAITING and cond(out.status, "Ready")["reason"] == "SecretMissing"
    assert "Secret db with key 'url'" in out.status["message"] and NS in out.status["message"]
    assert out.created == [] and kube.names("batch/v1", "Job") == []

    add_secret(kube, dsn, "db", "dsn")  # the Secret, but not the key
    assert reconcile(kube, "NASSearch", "nas").status["phase"] == WAITING
    add_secret(kube, dsn, "db2", "url")
    kube.patch(GROUP_VERSION, "NASSearch", NS, "nas", {"spec": {"storage": {"secretName": "db2"}}})
    out = reconcile(kube, "NASSearch", "nas")
    assert out.status["phase"] == PENDING and "Job/nas-search" in out.created
    job = kube.get("batch/v1", "Job", NS, "nas-search")
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["GEN5NAS_STORAGE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "db2", "key": "url"}


def test_storage_url_in_the_spec_is_invalid_and_never_shown(kube: MemoryKube) -> None:
    url = "postgresql+psycopg2://u:hunter2@db:5432/optuna"
    add_cr(kube, "NASSearch", "nas", search_spec(storage={"url": url}))
    out = reconcile(kube, "NASSearch", "nas")
    ready = cond(out.status, "Ready")
    assert out.status["phase"] == FAILED and ready["reason"] == "InvalidSpec"
    assert "spec.storage.url" in ready["message"] and "secretName" in ready["message"]
    shown = [
        kube.get(GROUP_VERSION, "NASSearch", NS, "nas")["status"],
        kube.list("v1", "Event", NS),
    ]
    assert "hunter2" not in json.dumps(shown)  # not in status, not in the Failed event
    assert out.created == [] and sorted(kube.objects) == [
        path("v1", "Event", NS), path(GROUP_VERSION, "NASSearch", NS),
    ]  # fmt: skip


def test_search_dependency_failed(kube: MemoryKube, dsn: str) -> None:
    add_secret(kube, dsn)
    add_cr(kube, "SupernetTraining", "st", {}, status={"phase": FAILED})
    spec = search_spec(supernetTraining="st")
    del spec["checkpoint"]
    add_cr(kube, "NASSearch", "nas", spec)
    out = reconcile(kube, "NASSearch", "nas")
    assert out.status["phase"] == FAILED
    assert cond(out.status, "Failed")["reason"] == "DependencyFailed"
    assert out.status["message"] == "SupernetTraining st failed"
    assert kube.names("batch/v1", "Job") == []


def test_search_failed_job_fails_and_removes_the_estimator(kube: MemoryKube, dsn: str) -> None:
    add_secret(kube, dsn)
    add_cr(kube, "NASSearch", "nas", search_spec())
    first = reconcile(kube, "NASSearch", "nas")
    assert sorted(first.created) == [
        "ConfigMap/nas-spec", "Deployment/nas-estimator", "Job/nas-search", "Service/nas-estimator",
    ]  # fmt: skip
    assert reconcile(kube, "NASSearch", "nas").created == []  # by name: nothing made twice

    job_failed(kube, "nas-search", "worker exited 1")
    out = reconcile(kube, "NASSearch", "nas")
    assert out.status["phase"] == FAILED and out.status["message"] == "worker exited 1"
    assert cond(out.status, "Failed")["reason"] == "BackoffLimitExceeded"
    assert sorted(out.deleted) == ["Deployment/nas-estimator", "Service/nas-estimator"]
    assert kube.names("apps/v1", "Deployment") == [] and out.status["estimator"]["removed"]
    assert cond(out.status, "EstimatorReady")["reason"] == "Removed"


def test_search_job_complete_without_complete_trials_fails(kube: MemoryKube, dsn: str) -> None:
    add_secret(kube, dsn)
    add_cr(kube, "NASSearch", "nas", search_spec())
    study = reconcile(kube, "NASSearch", "nas").status["studyName"]
    storage = open_storage(dsn)
    st = optuna.create_study(storage=storage, study_name=study, directions=list(DIRECTIONS))
    st.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    st.set_user_attr("outputs", outputs_attr("/w"))  # outputs alone do not make a success
    job_complete(kube, "nas-search")
    out = reconcile(kube, "NASSearch", "nas")
    assert out.status["phase"] == FAILED
    assert cond(out.status, "Failed")["reason"] == "NoCompleteTrials"
    assert study in out.status["message"] and out.status["trials"]["failed"] == 1


def test_search_succeeds_only_with_its_outputs_recorded(kube: MemoryKube, dsn: str) -> None:
    add_secret(kube, dsn)
    add_cr(kube, "NASSearch", "nas", search_spec())
    st = reconcile(kube, "NASSearch", "nas").status
    archs = write_study(dsn, st["studyName"], 3)  # trials, but the search step never finished
    job_complete(kube, "nas-search")
    out = reconcile(kube, "NASSearch", "nas")
    assert out.status["phase"] == FAILED
    assert cond(out.status, "Failed")["reason"] == "NoOutputs"
    assert "'outputs'" in out.status["message"] and "paretoHtml" in out.status["message"]

    partial = {k: v for k, v in outputs_attr(st["workDir"]).items() if k != "fixSubnets"}
    optuna.load_study(study_name=st["studyName"], storage=dsn).set_user_attr("outputs", partial)
    out = reconcile(kube, "NASSearch", "nas")
    assert cond(out.status, "Failed")["reason"] == "NoOutputs"
    assert "lacks fixSubnets" in out.status["message"]

    write_study(dsn, st["studyName"], 0, work_dir=st["workDir"])  # the search step's last act
    out = reconcile(kube, "NASSearch", "nas")
    assert out.status["phase"] == SUCCEEDED and out.status["message"] == ""
    assert out.status["outputs"] == outputs_attr(st["workDir"])
    assert out.status["front"]["top"][0]["arch"] == archs[0].summary()


def test_name_taken_by_a_stranger_is_a_conflict_and_left_alone(kube: MemoryKube, dsn: str) -> None:
    add_secret(kube, dsn)
    stranger = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "nas-search", "namespace": NS, "labels": {"app": "mine"}},
        "spec": {"template": {}},
    }  # fmt: skip
    kube.create(stranger)
    add_cr(kube, "NASSearch", "nas", search_spec())
    out = reconcile(kube, "NASSearch", "nas")
    assert out.status["phase"] == FAILED
    assert cond(out.status, "Failed")["reason"] == "NameConflict"
    assert "Job nas-search already exists" in out.status["message"]
    job = kube.get("batch/v1", "Job", NS, "nas-search")
    assert "ownerReferences" not in job["metadata"] and job["spec"] == {"template": {}}


def _pending_pod(name: str, job: str, waiting: dict[str, Any] | None, scheduled: bool) -> dict:
    status: dict[str, Any] = {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "True" if scheduled else "False",
         **({} if scheduled else {"reason": "Unschedulable",
                                  "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."})},
    ]}  # fmt: skip
    if waiting:
        status["containerStatuses"] = [{"name": "main", "state": {"waiting": waiting}}]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS,
                     "labels": {"batch.kubernetes.io/job-name": job}},
        "status": status,
    }  # fmt: skip


def estimator_available(kube: MemoryKube, name: str, available: int) -> None:
    kube.put_status("apps/v1", "Deployment", name, {"availableReplicas": available})


def test_search_is_ready_only_while_its_pods_run_and_the_estimator_serves(
    kube: MemoryKube, dsn: str
) -> None:
    add_secret(kube, dsn)
    add_cr(kube, "NASSearch", "nas", search_spec(parallelism=2))
    out = reconcile(kube, "NASSearch", "nas")
    # Pods pending: not Ready, Progressing and Reconciling (kstatus: in progress), no outputs,
    # and what a default leaves out of the spec is in status (the printer columns read it).
    kube.put_status("batch/v1", "Job", "nas-search", {"active": 2, "ready": 0})
    kube.create(_pending_pod("nas-search-a", "nas-search", None, scheduled=False))
    kube.create(_pending_pod("nas-search-b", "nas-search", {"reason": "ContainerCreating"}, True))
    out = reconcile(kube, "NASSearch", "nas")
    st = out.status
    assert st["phase"] == PENDING and "outputs" not in st
    ready = cond(st, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "PodsPending"
    assert ready["observedGeneration"] == st["observedGeneration"] == 1
    assert (
        "ContainerCreating: 1" in st["message"] and "Unschedulable: 1 (0/3 nodes" in st["message"]
    )
    assert cond(st, "Progressing")["status"] == "True"
    assert cond(st, "Reconciling")["status"] == "True"
    assert cond(st, "Stalled")["status"] == "False"
    assert (st["costKey"], st["costUnit"], st["maxTrials"], st["parallelism"]) == (
        "latency", "ms", 4, 2,
    )  # fmt: skip
    assert ("Normal", "PodsPending") in events_of(kube, "nas")  # the message changed: an event

    # The Job's pods run, the estimator has no available replica: Running, not Ready.
    kube.put_status("batch/v1", "Job", "nas-search", {"active": 2, "ready": 2})
    st = reconcile(kube, "NASSearch", "nas").status
    assert st["phase"] == RUNNING
    assert cond(st, "Ready")["status"] == "False"
    assert cond(st, "Ready")["reason"] == "EstimatorNotAvailable"
    assert "0/2 estimator replicas available" in st["message"]
    assert cond(st, "EstimatorReady")["status"] == "False"
    assert ("Normal", RUNNING) in events_of(kube, "nas")  # its pods start: no warning yet

    estimator_available(kube, "nas-estimator", 1)
    st = reconcile(kube, "NASSearch", "nas").status
    assert cond(st, "Ready")["status"] == "True" and cond(st, "Reconciling")["status"] == "False"
    assert cond(st, "EstimatorReady")["reason"] == "ReplicasAvailable"
    assert ("Normal", "PodsRunning") in events_of(kube, "nas")


def test_search_job_complete_on_a_missing_study_says_where_it_looked(
    kube: MemoryKube, tmp_path: Path
) -> None:
    dsn = f"sqlite:///{tmp_path}/nowhere.db"
    add_secret(kube, dsn)
    add_cr(kube, "NASSearch", "nas", search_spec())
    study = reconcile(kube, "NASSearch", "nas").status["studyName"]
    job_complete(kube, "nas-search")
    st = reconcile(kube, "NASSearch", "nas").status
    assert st["phase"] == FAILED and cond(st, "Failed")["reason"] == "StudyNotFound"
    assert f"study {study} was not found in {dsn}" in st["message"]
    assert cond(st, "Stalled")["status"] == "True" and cond(st, "Ready")["status"] == "False"


def test_search_study_not_found_hides_the_password() -> None:
    from gen5nas_operator.common.child_state import ChildState
    from gen5nas_operator.kinds.search.reconcile import _phase, _Study

    where = "postgresql+psycopg2://u:***@db.example:5432/optuna"
    phase, reason, message = _phase(ChildState(SUCCEEDED), _Study(where), "ns.nas.1")
    assert (phase, reason) == (FAILED, "StudyNotFound")
    assert (
        "study ns.nas.1 was not found in postgresql+psycopg2://u:***@db.example:5432/optuna"
        in message
    )


def test_search_parallelism_change_scales_the_running_job(kube: MemoryKube, dsn: str) -> None:
    add_secret(kube, dsn)
    add_cr(kube, "NASSearch", "nas", search_spec(parallelism=2))
    reconcile(kube, "NASSearch", "nas")
    assert kube.get("batch/v1", "Job", NS, "nas-search")["spec"]["parallelism"] == 2
    kube.patch(GROUP_VERSION, "NASSearch", NS, "nas",
               {"metadata": {"generation": 2}, "spec": {"parallelism": 4}})  # fmt: skip
    out = reconcile(kube, "NASSearch", "nas")
    assert kube.get("batch/v1", "Job", NS, "nas-search")["spec"]["parallelism"] == 4
    assert out.status["parallelism"] == 4 and out.status["observedGeneration"] == 2
    scaled = [e for e in kube.list("v1", "Event", NS) if e["reason"] == "Scaled"]
    assert len(scaled) == 1 and "parallelism 2 -> 4" in scaled[0]["message"]
    doc = yaml.safe_load(kube.get("v1", "ConfigMap", NS, "nas-spec")["data"]["spec.yaml"])
    assert doc["spec"]["parallelism"] == 4  # the spec the workers read, in step
    reconcile(kube, "NASSearch", "nas")
    assert len([e for e in kube.list("v1", "Event", NS) if e["reason"] == "Scaled"]) == 1
    # A finished Job is left as it is.
    job_complete(kube, "nas-search")
    kube.patch(GROUP_VERSION, "NASSearch", NS, "nas", {"spec": {"parallelism": 1}})
    reconcile(kube, "NASSearch", "nas")
    assert kube.get("batch/v1", "Job", NS, "nas-search")["spec"]["parallelism"] == 4


def test_search_waiting_on_a_deleted_training_warns_and_takes_a_new_reference(
    kube: MemoryKube, dsn: str
) -> None:
    add_secret(kube, dsn)
    add_cr(kube, "SupernetTraining", "st", TRAINING, status={"phase": RUNNING})
    spec = search_spec(supernetTraining="st")
    del spec["checkpoint"]
    add_cr(kube, "NASSearch", "nas", spec)
    st = reconcile(kube, "NASSearch", "nas").status
    assert st["phase"] == WAITING and cond(st, "Ready")["reason"] == "WaitingForDependency"
    kube.delete(GROUP_VERSION, "SupernetTraining", NS, "st")
    st = reconcile(kube, "NASSearch", "nas").status
    assert st["phase"] == WAITING and cond(st, "Ready")["reason"] == "DependencyNotFound"
    events = [e for e in kube.list("v1", "Event", NS) if e["involvedObject"]["name"] == "nas"]
    last = events[-1]
    assert (last["type"], last["reason"]) == ("Warning", "DependencyNotFound")
    assert last["message"].startswith(f"SupernetTraining st not found in namespace {NS}")
    reconcile(kube, "NASSearch", "nas")  # nothing changed: no new event
    assert len([e for e in kube.list("v1", "Event", NS)
                if e["involvedObject"]["name"] == "nas"]) == len(events)  # fmt: skip
    # The reference may change while Waiting (the CRD allows it): the new one is followed.
    add_cr(kube, "SupernetTraining", "st2", TRAINING,
           status={"phase": SUCCEEDED, "checkpoint": "/results/team-a/st2"})  # fmt: skip
    kube.patch(GROUP_VERSION, "NASSearch", NS, "nas", {"spec": {"supernetTraining": "st2"}})
    st = reconcile(kube, "NASSearch", "nas").status
    assert st["phase"] == PENDING and st["checkpoint"] == "/results/team-a/st2"


def test_missing_secret_is_a_warning_event(kube: MemoryKube) -> None:
    add_cr(kube, "NASSearch", "nas", search_spec())
    reconcile(kube, "NASSearch", "nas")
    assert events_of(kube, "nas") == [("Warning", WAITING)]


# ---- SubnetExport ------------------------------------------------------------------------------
def export_spec(**extra: Any) -> dict[str, Any]:
    return {"nasSearch": "nas", "trial": 1, **extra}


def test_export_waits_for_its_nassearch(kube: MemoryKube, dsn: str) -> None:
    add_cr(kube, "SubnetExport", "sx", export_spec())
    out = reconcile(kube, "SubnetExport", "sx")
    assert out.status["phase"] == WAITING
    assert cond(out.status, "Ready")["reason"] == "DependencyNotFound"
    assert out.status["message"].startswith(f"NASSearch nas not found in namespace {NS}")
    assert "spec.nasSearch" in out.status["message"]
    assert ("Warning", "Waiting") in events_of(kube, "sx")

    add_cr(kube, "NASSearch", "nas", search_spec(), status={"phase": RUNNING})
    out = reconcile(kube, "SubnetExport", "sx")
    assert out.status["phase"] == WAITING and "(it is Running)" in out.status["message"]
    assert cond(out.status, "Ready")["reason"] == "WaitingForDependency"
    # the same phase, another reason: an event says so
    assert ("Normal", "WaitingForDependency") in events_of(kube, "sx")
    assert out.created == [] and kube.names("batch/v1", "Job") == []

    kube.put_status(GROUP_VERSION, "NASSearch", "nas", {"phase": FAILED})
    out = reconcile(kube, "SubnetExport", "sx")
    assert out.status["phase"] == FAILED
    assert cond(out.status, "Failed")["reason"] == "DependencyFailed"
    assert kube.names("batch/v1", "Job") == []


def _pod(name: str, created: str, message: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "creationTimestamp": created,
                     "labels": {"batch.kubernetes.io/job-name": "sx-export"}},
        "status": {"containerStatuses": [
            {"name": "export", "state": {"terminated": {"exitCode": 0, "message": message}}}
        ]},
    }  # fmt: skip


def test_export_success_status_from_the_termination_message(
    kube: MemoryKube, dsn: str, tmp_path: Path
) -> None:
    add_secret(kube, dsn, "db", "url")
    add_cr(
        kube, "NASSearch", "nas", search_spec(storage={"secretName": "db", "secretKey": "url"}),
        status={"phase": SUCCEEDED, "studyName": "team-a.nas.1234", "checkpoint": "/results/ck"},
    )  # fmt: skip
    add_cr(kube, "SubnetExport", "sx", export_spec())
    out = reconcile(kube, "SubnetExport", "sx")
    assert out.status["phase"] == PENDING and "Job/sx-export" in out.created
    doc = yaml.safe_load(kube.get("v1", "ConfigMap", NS, "sx-spec")["data"]["spec.yaml"])
    assert doc["spec"]["studyName"] == "team-a.nas.1234" and doc["spec"]["trial"] == 1
    assert doc["spec"]["checkpoint"] == "/results/ck"
    job = kube.get("batch/v1", "Job", NS, "sx-export")
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["GEN5NAS_STORAGE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "db", "key": "url"}

    job_complete(kube, "sx-export")
    out = reconcile(kube, "SubnetExport", "sx")
    assert out.status["phase"] == SUCCEEDED
    assert (
        out.status["message"]
        == "the export Job succeeded but left no report in its termination message"
    )

    # the export pod's last step writes the card into its termination message
    arch = sample_arch(1)
    card = {
        "onnx": {"file": "trial_1.onnx", "sha256": "ab" * 32, "bytes": 4321,
                 "parity": {"max_abs_diff": 1e-6, "tolerance": 1e-4}},
        "cost": {"latency_ms": 1.25, "energy_mj": 2.5, "profile": "rcar-gen5-npu"},
        "arch": arch.to_yaml_dict(), "arch_summary": arch.summary(),
    }  # fmt: skip
    (tmp_path / "trial_1.card.json").write_text(json.dumps(card))
    assert termination.main([str(tmp_path), str(tmp_path / "msg")]) == 0
    kube.create(_pod("sx-export-old", "2025-01-01T00:00:00Z", "Traceback: first try died"))
    kube.create(_pod("sx-export-new", "2025-01-01T00:05:00Z", (tmp_path / "msg").read_text()))
    out = reconcile(kube, "SubnetExport", "sx")
    st = out.status
    assert st["phase"] == SUCCEEDED and st["trial"] == 1
    assert st["onnx"] == {
        "path": str(tmp_path / "trial_1.onnx"),
        "sha256": "ab" * 32,
        "sizeBytes": 4321,
    }
    assert st["parity"] == {"passed": True, "maxAbsDiff": 1e-6}
    assert st["cost"] == {"latencyMs": 1.25, "energyMj": 2.5, "profile": "rcar-gen5-npu"}
    assert st["arch"] == arch.summary()


# ---- the resync loop (periodic sync without a kopf timer, hence without a finalizer) ---------
TRAINING = {"searchSpace": {"name": "mobilenetv2_tiny"}, "dataset": {"kind": "digits"}}


def events_of(kube: Kube, name: str) -> list[tuple[str, str]]:
    return sorted(
        (e["type"], e["reason"]) for e in kube.list("v1", "Event", NS)
        if e["involvedObject"]["name"] == name
    )  # fmt: skip


@pytest.mark.parametrize("namespaces", [[], [NS]], ids=["all-namespaces", "listed"])
def test_resync_pass_syncs_the_active_skips_the_settled_and_goes_on_past_a_failure(
    kube: MemoryKube, dsn: str, namespaces: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    add_secret(kube, dsn)
    add_cr(kube, "SupernetTraining", "st-broken", TRAINING)  # listed first: fails first
    add_cr(kube, "SupernetTraining", "st", TRAINING)
    add_cr(kube, "SupernetTraining", "st-going", TRAINING)
    kube.patch(GROUP_VERSION, "SupernetTraining", NS, "st-going",
               {"metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"}})  # fmt: skip
    settled = {"phase": SUCCEEDED, "observedGeneration": 1, "message": "done"}
    add_cr(kube, "NASSearch", "nas-done", search_spec(), status=settled)
    add_cr(
        kube, "NASSearch", "nas-stale", search_spec(), status={**settled, "observedGeneration": 0}
    )
    kube.fail.add(path(GROUP_VERSION, "SupernetTraining", NS, "st-broken"))
    settings = Settings(namespaces=namespaces)

    with caplog.at_level(logging.ERROR, logger="gen5nas_operator.resync"):
        assert resync.resync_pass(kube, settings) == 2  # st and nas-stale
    assert "SupernetTraining team-a/st-broken failed" in caplog.text

    st = kube.get(GROUP_VERSION, "SupernetTraining", NS, "st")["status"]
    assert st["phase"] == PENDING and st["backend"] == "IndexedJob"
    assert ("PATCH", path(GROUP_VERSION, "SupernetTraining", NS, "st") + "/status") in kube.calls
    assert events_of(kube, "st") == [("Normal", "Created")] * 3 + [("Normal", PENDING)]
    uid = kube.get(GROUP_VERSION, "SupernetTraining", NS, "st")["metadata"]["uid"]
    assert {e["involvedObject"]["uid"] for e in kube.list("v1", "Event", NS)
            if e["involvedObject"]["name"] == "st"} == {uid}  # fmt: skip
    # settled: not even read again; being deleted: read, left alone; behind its spec: synced
    assert ("GET", path(GROUP_VERSION, "NASSearch", NS, "nas-done")) not in kube.calls
    done = kube.get(GROUP_VERSION, "NASSearch", NS, "nas-done")
    assert done["status"] == settled and events_of(kube, "nas-done") == []
    assert "status" not in kube.get(GROUP_VERSION, "SupernetTraining", NS, "st-going")
    assert kube.names("batch/v1", "Job") == ["nas-stale-search", "st-train"]

    # The API server is back: st-broken is synced; st has nothing new to report.
    kube.fail.clear()
    assert resync.resync_pass(kube, settings) == 3
    assert events_of(kube, "st") == [("Normal", "Created")] * 3 + [("Normal", PENDING)]
    assert events_of(kube, "st-broken") == [("Normal", "Created")] * 3 + [("Normal", PENDING)]
    job_complete(kube, "st-train")
    resync.resync_pass(kube, settings)
    assert kube.get(GROUP_VERSION, "SupernetTraining", NS, "st")["status"]["phase"] == SUCCEEDED
    assert events_of(kube, "st")[-1] == ("Normal", SUCCEEDED)


def test_resync_loop_keeps_going_after_failures_and_stops_when_cancelled(
    kube: MemoryKube, dsn: str
) -> None:
    add_cr(kube, "SupernetTraining", "st", TRAINING)
    listing = path(GROUP_VERSION, "SupernetTraining", NS)
    kube.fail.add(listing)
    settings = Settings(namespaces=[NS], reconcile_interval_s=0.01)

    def phase() -> str | None:
        return (kube.get(GROUP_VERSION, "SupernetTraining", NS, "st").get("status") or {}).get(
            "phase"
        )

    async def until(what: str, fn: Any) -> None:
        async def poll() -> None:
            while not fn():
                await asyncio.sleep(0.01)

        try:
            await asyncio.wait_for(poll(), timeout=30)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None

    async def scenario() -> None:
        task = asyncio.create_task(resync.resync_forever(kube, settings))
        await until("two failed listings", lambda: kube.calls.count(("GET", listing)) >= 2)
        assert phase() is None
        kube.fail.clear()
        await until("st synced", lambda: phase() == PENDING)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


# ---- the operator image has no torch -------------------------------------------------------------
def test_operator_imports_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any `import torch` now raises
        "import gen5nas_operator.handlers, gen5nas_operator.__main__\n"
        "assert 'torch' in sys.modules and sys.modules['torch'] is None\n"
        "print('ok')"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_kit_trial_attrs_are_the_runners() -> None:
    """The trials these tests (and the e2e ones) write are what a real search worker writes."""
    pytest.importorskip("torch")  # the runner needs it; the operator does not
    from support.search import proxy_outcome, tiny_space

    from gen5nas.search.runner import Worker

    seen = []

    def evaluate(arch: Any) -> Any:
        seen.append(arch)
        return proxy_outcome(arch)

    study = optuna.create_study(directions=list(DIRECTIONS))
    Worker(study, tiny_space(), evaluate, "latency", 1).run()
    (trial,) = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    o = proxy_outcome(seen[0])
    kit = trial_user_attrs(seen[0], o.accuracy, o.latency_ms, o.energy_mj)
    assert {k: trial.user_attrs.get(k) for k in kit} == kit


# ---- SupernetTraining progress ------------------------------------------------------------------
def add_train_pod(kube: Kube, owner_uid: str, name: str, progress: str | None) -> None:
    meta: dict[str, Any] = {
        "name": name, "namespace": NS,
        "labels": {"gen5nas.io/owner-uid": owner_uid, "app.kubernetes.io/component": "train"},
    }  # fmt: skip
    if progress is not None:
        meta["annotations"] = {"gen5nas.io/progress": progress}
    kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": meta})


def progress_json(epoch: int, updated: str, **extra: Any) -> str:
    doc = {"epoch": epoch, "epochs": 5, "iteration": 10 * epoch, "updated": updated, **extra}
    return json.dumps(doc)


def test_training_status_shows_rank_0s_latest_progress(
    kube: MemoryKube, caplog: pytest.LogCaptureFixture
) -> None:
    add_cr(kube, "SupernetTraining", "st", TRAINING)
    reconcile(kube, "SupernetTraining", "st")
    # the namespace's workload identity, shared and owned by no CR (no events for it)
    rbac = "rbac.authorization.k8s.io/v1"
    for api, kind in (("v1", "ServiceAccount"), (rbac, "Role"), (rbac, "RoleBinding")):
        assert kube.names(api, kind) == ["gen5nas-workload"]
        assert "ownerReferences" not in kube.get(api, kind, NS, "gen5nas-workload")["metadata"]
    assert events_of(kube, "st") == [("Normal", "Created")] * 3 + [("Normal", PENDING)]
    uid = kube.get(GROUP_VERSION, "SupernetTraining", NS, "st")["metadata"]["uid"]
    assert "progress" not in kube.get(GROUP_VERSION, "SupernetTraining", NS, "st")["status"]

    # a restarted group: the old rank 0 pod's report is older than the new one's; workers
    # report nothing; a stranger's pod and a malformed annotation are ignored
    add_train_pod(kube, uid, "st-train-0-old", progress_json(1, "2025-01-01T00:01:00Z"))
    add_train_pod(kube, uid, "st-train-0-new", progress_json(
        2, "2025-01-01T00:02:00Z", metric="accuracy/top1", maxScore=70.5,
        minScore=55.25))  # fmt: skip
    add_train_pod(kube, uid, "st-train-1-new", None)
    add_train_pod(kube, "someone-else", "other-0", progress_json(4, "2025-01-01T00:09:00Z"))
    add_train_pod(kube, uid, "st-train-0-bad", '{"epoch": "three", "epochs": 5, "iteration": 1}')
    with caplog.at_level(logging.WARNING, logger="gen5nas_operator.reconcile"):
        reconcile(kube, "SupernetTraining", "st")
        reconcile(kube, "SupernetTraining", "st")
    st = kube.get(GROUP_VERSION, "SupernetTraining", NS, "st")["status"]
    assert st["progress"] == {
        "epoch": 2, "epochs": 5, "iteration": 20, "metric": "accuracy/top1", "maxScore": 70.5,
        "minScore": 55.25, "updated": "2025-01-01T00:02:00Z",
    }  # fmt: skip
    bad = [r.getMessage() for r in caplog.records if "st-train-0-bad" in r.getMessage()]
    assert len(bad) == 1 and "epoch: a whole number >= 0 is required" in bad[0]  # logged once

    # pods gone (e.g. cleaned up): the last progress stays
    for pod in kube.names("v1", "Pod"):
        kube.delete("v1", "Pod", NS, pod)
    job_complete(kube, "st-train")
    reconcile(kube, "SupernetTraining", "st")
    st = kube.get(GROUP_VERSION, "SupernetTraining", NS, "st")["status"]
    assert st["phase"] == SUCCEEDED and st["progress"]["epoch"] == 2


def test_training_with_its_own_service_account_gets_no_workload_identity(
    kube: MemoryKube,
) -> None:
    sa = {"apiVersion": "v1", "kind": "ServiceAccount",
          "metadata": {"name": "gen5nas-workload", "namespace": NS, "labels": {"mine": "yes"}}}  # fmt: skip
    kube.create(sa)  # an administrator's own: left as it is, no NameConflict
    add_cr(kube, "SupernetTraining", "st", TRAINING)
    assert reconcile(kube, "SupernetTraining", "st").status["phase"] == PENDING
    assert kube.get("v1", "ServiceAccount", NS, "gen5nas-workload")["metadata"]["labels"] == {
        "mine": "yes"
    }
    assert kube.names("rbac.authorization.k8s.io/v1", "Role") == ["gen5nas-workload"]

    other = MemoryKube()
    add_cr(other, "SupernetTraining", "st", {**TRAINING, "runtime": {"serviceAccountName": "x"}})
    assert reconcile(other, "SupernetTraining", "st").status["phase"] == PENDING
    assert other.names("v1", "ServiceAccount") == []
    assert other.names("rbac.authorization.k8s.io/v1", "Role") == []

"""One reconcile per kind: read the world, make the children that are missing (by name: a
restart creates no duplicates), and return the status the resource should have. The kopf
create/resume/update handlers and the resync loop (resync.py) call these; resync.apply posts
events for what changed and patches the status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from gen5nas.errors import Gen5NasError
from gen5nas.search import outputs as search_outputs
from gen5nas.spec.common import GROUP_VERSION
from gen5nas.spec.export import SubnetExportSpec
from gen5nas.spec.search import NASSearchSpec
from gen5nas.spec.space import parse_model
from gen5nas.spec.training import SupernetTrainingSpec
from gen5nas.train.progress_report import ANNOTATION as PROGRESS_ANNOTATION
from gen5nas_operator import builders as b
from gen5nas_operator import status as s
from gen5nas_operator.kube import Kube
from gen5nas_operator.settings import Settings
from gen5nas_operator.study import StudyUnavailable, read_trials

log = logging.getLogger(__name__)

# The study user attr the search step sets once it has written its outputs: status key ->
# absolute path. A search Job that completed without it did not finish its work.
OUTPUTS_ATTR = search_outputs.OUTPUTS_ATTR
OUTPUT_KEYS = tuple(search_outputs.OUTPUT_STATUS_KEYS.values())


@dataclass
class Outcome:
    status: dict[str, Any]
    created: list[str] = field(default_factory=list)  # "Kind/name" of children made now
    deleted: list[str] = field(default_factory=list)


class NameConflict(Gen5NasError):
    """An object with a child's name exists and belongs to something else."""


def _parse(model: type, body: dict[str, Any]) -> Any:
    """The spec model, or a Gen5NasError naming the field."""
    try:
        return parse_model(model, body.get("spec") or {}, source="spec")
    except ValidationError as exc:  # parse_model raises SpecError; belt and braces
        raise Gen5NasError(str(exc)) from None


def ensure(kube: Kube, owner: b.Owner, manifests: list[dict[str, Any]]) -> list[str]:
    """Create what is missing; keep ConfigMaps in step with the spec; never touch what is not
    ours. Returns the children created by this call."""
    created = []
    for m in manifests:
        meta = m["metadata"]
        existing = kube.get(m["apiVersion"], m["kind"], meta["namespace"], meta["name"])
        if existing is None:
            existing, made = kube.create(m)
            if made:
                created.append(f"{m['kind']}/{meta['name']}")
        refs = existing.get("metadata", {}).get("ownerReferences") or []
        if not any(r.get("uid") == owner.uid for r in refs):
            raise NameConflict(
                f"{m['kind']} {meta['name']} already exists and is not owned by this "
                f"{owner.kind}; delete or rename it"
            )
        if m["kind"] == "ConfigMap" and existing.get("data") != m["data"]:
            kube.patch("v1", "ConfigMap", meta["namespace"], meta["name"], {"data": m["data"]})
    return created


def _children(manifests: list[dict[str, Any]]) -> dict[str, str]:
    role = {"ConfigMap": "spec", "Job": "job", "PyTorchJob": "job", "Deployment": "estimator"}
    out = {}
    for m in manifests:
        key = role.get(m["kind"]) or (
            "estimatorService" if "estimator" in m["metadata"]["name"] else "service"
        )
        out[key] = m["metadata"]["name"]
    return out


def _with_times(st: dict[str, Any], state: s.ChildState) -> dict[str, Any]:
    if state.start_time:
        st["startTime"] = state.start_time
    if state.completion_time:
        st["completionTime"] = state.completion_time
    return st


def _dependency(
    kube: Kube, owner: b.Owner, kind: str, name: str
) -> tuple[dict[str, Any] | None, str | None, str]:
    """(the resource, a phase to wait in or fail with, why)."""
    dep = kube.get(GROUP_VERSION, kind, owner.namespace, name)
    if dep is None:
        return None, s.WAITING, f"waiting for {kind} {name} (not found)"
    phase = (dep.get("status") or {}).get("phase")
    if phase == s.FAILED:
        return dep, s.FAILED, f"{kind} {name} failed"
    if phase != s.SUCCEEDED:
        return dep, s.WAITING, f"waiting for {kind} {name} to succeed (now {phase or 'new'})"
    return dep, None, ""


def _blocked(old: dict, phase: str, why: str, gen: int | None) -> Outcome:
    reason = "WaitingForDependency" if phase == s.WAITING else "DependencyFailed"
    return Outcome(s.phase_status(old, phase, reason, why, gen))


def _meta(body: dict[str, Any]) -> tuple[b.Owner, dict[str, Any], int | None]:
    return (
        b.Owner.from_body(body),
        dict(body.get("status") or {}),
        body["metadata"].get("generation"),
    )


# ---- SupernetTraining ----------------------------------------------------------------------
def training_backend(kube: Kube, settings: Settings, old: dict[str, Any]) -> str:
    if old.get("backend"):
        return str(old["backend"])  # sticky: a running training never switches
    if settings.training_backend == "pytorchjob":
        return "PyTorchJob"
    if settings.training_backend == "indexedjob":
        return "IndexedJob"
    return "PyTorchJob" if kube.serves("kubeflow.org/v1", "pytorchjobs") else "IndexedJob"


def reconcile_training(kube: Kube, settings: Settings, body: dict[str, Any]) -> Outcome:
    owner, old, gen = _meta(body)
    try:
        spec: SupernetTrainingSpec = _parse(SupernetTrainingSpec, body)
        spec.search_space.resolve()
    except Gen5NasError as exc:
        return Outcome(s.invalid_spec(old, str(exc), gen))
    backend = training_backend(kube, settings, old)
    if not spec.runtime.service_account_name:
        ensure_workload_identity(kube, owner.namespace)
    manifests = b.training_children(
        owner, spec, body["spec"], settings, use_pytorchjob=backend == "PyTorchJob"
    )
    created = ensure(kube, owner, manifests)
    job_name = b.child_name(owner, "train")
    if backend == "PyTorchJob":
        state = s.pytorchjob_state(
            kube.get("kubeflow.org/v1", "PyTorchJob", owner.namespace, job_name)
        )
    else:
        state = s.job_state(kube.get("batch/v1", "Job", owner.namespace, job_name))
    st = s.phase_status(old, state.phase, state.reason, state.message, gen)
    st.update(
        backend=backend,
        workDir=b.work_dir(owner, spec.runtime),
        checkpoint=b.training_checkpoint(owner, spec.runtime),
        children=_children(manifests),
    )
    progress = training_progress(kube, owner)
    if progress is not None:
        st["progress"] = progress
    return Outcome(_with_times(st, state), created)


def ensure_workload_identity(kube: Kube, namespace: str) -> None:
    """The namespace's ServiceAccount + Role + RoleBinding for training pods, made when
    missing. Shared by every training and owned by none (no events on a CR); one that exists is
    left as it is, so an administrator may provide their own."""
    for m in b.workload_identity(namespace):
        if kube.get(m["apiVersion"], m["kind"], namespace, m["metadata"]["name"]) is None:
            _, made = kube.create(m)
            if made:
                log.info("created %s %s/%s", m["kind"], namespace, m["metadata"]["name"])


_malformed: set[tuple[str, str]] = set()  # (pod uid, annotation) already logged


def training_progress(kube: Kube, owner: b.Owner) -> dict[str, Any] | None:
    """The latest progress a training pod reports (only rank 0 writes one; a restarted group
    leaves older pods behind, so the newest ``updated`` wins). A malformed annotation is logged
    once and ignored."""
    selector = ",".join(f"{k}={v}" for k, v in b.selector(owner, "train").items())
    best: tuple[str, dict[str, Any]] | None = None
    for pod in kube.list("v1", "Pod", owner.namespace, selector):
        meta = pod.get("metadata") or {}
        raw = (meta.get("annotations") or {}).get(PROGRESS_ANNOTATION)
        if raw is None:
            continue
        try:
            progress = s.training_progress(raw)
        except ValueError as exc:
            key = (str(meta.get("uid")), raw)
            if key not in _malformed:
                if len(_malformed) > 1000:
                    _malformed.clear()
                _malformed.add(key)
                log.warning(
                    "%s %s/%s: ignoring annotation %s of pod %s: %s", owner.kind,
                    owner.namespace, owner.name, PROGRESS_ANNOTATION, meta.get("name"), exc,
                )  # fmt: skip
            continue
        rank = str(progress.get("updated") or "")
        if best is None or rank > best[0]:
            best = (rank, progress)
    return best[1] if best else None


# ---- NASSearch -----------------------------------------------------------------------------
def dsn_secret_of(spec_storage: Any, settings: Settings) -> tuple[str, str]:
    if spec_storage.secret_name:
        return spec_storage.secret_name, spec_storage.secret_key
    return settings.dsn_secret, settings.dsn_secret_key


def reconcile_search(kube: Kube, settings: Settings, body: dict[str, Any]) -> Outcome:
    owner, old, gen = _meta(body)
    try:
        spec: NASSearchSpec = _parse(NASSearchSpec, body)
        if spec.storage.url:
            raise Gen5NasError(
                "spec.storage.url: in a cluster the study DSN comes from a Secret, never from "
                "the spec (anyone who can read the NASSearch could read it); put it in a Secret "
                "and name it in spec.storage.secretName"
            )
        if not spec.supernet_training and not spec.checkpoint:
            raise Gen5NasError(
                "spec: name the supernet to search: supernetTraining (a SupernetTraining in this "
                "namespace) or checkpoint (a path on the results PVC)"
            )
    except Gen5NasError as exc:
        return Outcome(s.invalid_spec(old, str(exc), gen))

    job_name = b.child_name(owner, "search")
    job = kube.get("batch/v1", "Job", owner.namespace, job_name)
    checkpoint = spec.checkpoint or old.get("checkpoint")
    if spec.supernet_training and job is None:
        dep, blocked, why = _dependency(kube, owner, "SupernetTraining", spec.supernet_training)
        if blocked:
            return _blocked(old, blocked, why, gen)
        checkpoint = (dep or {}).get("status", {}).get("checkpoint")
        if not checkpoint:
            return _blocked(old, s.WAITING, "the SupernetTraining has no checkpoint yet", gen)
    secret = dsn_secret_of(spec.storage, settings)
    dsn = kube.secret_value(owner.namespace, *secret)
    if dsn is None:
        return Outcome(
            s.phase_status(
                old,
                s.WAITING,
                "SecretMissing",
                f"waiting for Secret {secret[0]} with key {secret[1]!r} (the study DSN) in "
                f"namespace {owner.namespace}",
                gen,
            )
        )
    assert checkpoint is not None
    manifests = b.search_children(owner, spec, body["spec"], settings, checkpoint, secret)
    job_state = s.job_state(job)
    finished = job_state.phase in s.TERMINAL
    keep_estimator = spec.estimator.keep_after_completion
    estimator_kinds = ("Deployment", "Service")
    if finished and not keep_estimator:
        manifests = [m for m in manifests if m["kind"] not in estimator_kinds]
    created = ensure(kube, owner, manifests)
    if job is None:
        job = kube.get("batch/v1", "Job", owner.namespace, job_name)
        job_state = s.job_state(job)

    study = b.study_name(owner, spec)
    st: dict[str, Any] = {
        "studyName": study,
        "checkpoint": checkpoint,
        "workDir": b.work_dir(owner, spec.runtime),
        "children": _children(
            b.search_children(owner, spec, body["spec"], settings, checkpoint, secret)
        ),
    }
    work = st["workDir"]
    st["outputs"] = {
        "paretoHtml": f"{work}/{search_outputs.HTML_NAME}",
        "paretoPng": f"{work}/{search_outputs.PNG_NAME}",
        "subnetsCsv": f"{work}/{search_outputs.CSV_NAME}",
        "studyPkl": f"{work}/{search_outputs.PICKLE_NAME}",
        "fixSubnets": f"{work}/{search_outputs.FIX_SUBNETS}/",
    }
    study_error = ""
    complete = 0
    recorded: dict[str, Any] = {}
    try:
        found = read_trials(dsn, study)
    except StudyUnavailable as exc:
        found, study_error = None, str(exc)
    if found is not None:
        trials, attrs = found
        st.update(s.study_status(trials, spec, settings.front_top))
        complete = st["trials"]["complete"]
        if isinstance(attrs.get(OUTPUTS_ATTR), dict):  # the search records what it wrote
            recorded = attrs[OUTPUTS_ATTR]
            st["outputs"].update({k: str(v) for k, v in recorded.items()})

    phase, reason, message = job_state.phase, job_state.reason, job_state.message
    if phase == s.SUCCEEDED and complete == 0:
        phase, reason = s.FAILED, "NoCompleteTrials"
        message = study_error or (
            f"the search Job completed but study {study} has no complete trial, so no outputs"
        )
    elif phase == s.SUCCEEDED and (missing := [k for k in OUTPUT_KEYS if not recorded.get(k)]):
        phase, reason = s.FAILED, "NoOutputs"
        message = (
            f"the search Job completed but study {study} does not record its outputs "
            f"(study user attr {OUTPUTS_ATTR!r} lacks {', '.join(missing)}; the search step "
            "sets it after writing them): see the search Job's logs"
        )
    elif phase == s.RUNNING and study_error:
        message = study_error
    st.update(s.phase_status(old, phase, reason, message, gen))

    deleted = []
    if spec.estimator.servers:
        st["estimator"] = {
            "endpoints": [f"{x.host}:{p}" for x in spec.estimator.servers for p in x.ports]
        }
    else:
        name = b.child_name(owner, "estimator")
        st["estimator"] = {
            "service": name,
            "endpoints": [
                f"{e['host']}:{p}" for e in b.estimator_endpoints(owner, spec) for p in e["ports"]
            ],
            "removed": False,
        }
        if phase in s.TERMINAL and not keep_estimator:
            for kind, api in (("Deployment", "apps/v1"), ("Service", "v1")):
                if kube.delete(api, kind, owner.namespace, name):
                    deleted.append(f"{kind}/{name}")
            st["estimator"]["removed"] = True
            st["conditions"] = s.set_condition(
                st["conditions"], "EstimatorReady", False, "Removed",
                "the search finished; set spec.estimator.keepAfterCompletion to keep it", gen,
            )  # fmt: skip
        else:
            dep = kube.get("apps/v1", "Deployment", owner.namespace, name) or {}
            ready = (dep.get("status") or {}).get("readyReplicas") or 0
            st["conditions"] = s.set_condition(
                st["conditions"], "EstimatorReady", ready > 0,
                "ReplicasReady" if ready else "NoReadyReplica",
                f"{ready}/{spec.estimator.replicas} estimator replicas ready", gen,
            )  # fmt: skip
    return Outcome(_with_times(st, job_state), created, deleted)


# ---- SubnetExport ----------------------------------------------------------------------------
def reconcile_export(kube: Kube, settings: Settings, body: dict[str, Any]) -> Outcome:
    owner, old, gen = _meta(body)
    try:
        spec: SubnetExportSpec = _parse(SubnetExportSpec, body)
        if spec.storage:
            raise Gen5NasError(
                "spec.storage: in a cluster the study comes from spec.nasSearch (its DSN from a "
                "Secret); a URL in the spec would expose it"
            )
        if spec.trial is not None and not spec.nas_search:
            raise Gen5NasError("spec.trial: name the NASSearch it belongs to in spec.nasSearch")
        if not (spec.checkpoint or spec.supernet_training or spec.nas_search):
            raise Gen5NasError(
                "spec: name the supernet: checkpoint, supernetTraining, or nasSearch (whose "
                "checkpoint is used)"
            )
    except Gen5NasError as exc:
        return Outcome(s.invalid_spec(old, str(exc), gen))

    job_name = b.child_name(owner, "export")
    job = kube.get("batch/v1", "Job", owner.namespace, job_name)
    overrides: dict[str, Any] = {"storage": None}
    dsn_secret = None
    checkpoint = spec.checkpoint or old.get("checkpoint")
    if job is None:
        if spec.supernet_training:
            dep, blocked, why = _dependency(kube, owner, "SupernetTraining", spec.supernet_training)
            if blocked:
                return _blocked(old, blocked, why, gen)
            checkpoint = spec.checkpoint or (dep or {}).get("status", {}).get("checkpoint")
        if spec.nas_search:
            dep, blocked, why = _dependency(kube, owner, "NASSearch", spec.nas_search)
            if blocked:
                return _blocked(old, blocked, why, gen)
            dep_status = (dep or {}).get("status") or {}
            checkpoint = checkpoint or dep_status.get("checkpoint")
            if spec.trial is not None:
                overrides["studyName"] = dep_status.get("studyName")
                dep_spec = _parse(NASSearchSpec, dep or {})
                dsn_secret = dsn_secret_of(dep_spec.storage, settings)
    elif spec.trial is not None and spec.nas_search:
        dep = kube.get(GROUP_VERSION, "NASSearch", owner.namespace, spec.nas_search) or {}
        overrides["studyName"] = (dep.get("status") or {}).get("studyName")
        dsn_secret = dsn_secret_of(_parse(NASSearchSpec, dep).storage, settings) if dep else None
    if not checkpoint:
        return _blocked(old, s.WAITING, "no checkpoint known yet", gen)
    overrides["checkpoint"] = checkpoint
    manifests = b.export_children(owner, spec, body["spec"], settings, overrides, dsn_secret)
    created = ensure(kube, owner, manifests)
    job = job or kube.get("batch/v1", "Job", owner.namespace, job_name)
    state = s.job_state(job)
    st = s.phase_status(old, state.phase, state.reason, state.message, gen)
    st.update(
        checkpoint=checkpoint,
        workDir=b.work_dir(owner, spec.runtime),
        children=_children(manifests),
    )
    if spec.trial is not None:
        st["trial"] = spec.trial
    if state.phase in s.TERMINAL:
        report = _export_report(kube, owner, job_name)
        if report:
            st.update(report)
        elif state.phase == s.SUCCEEDED:
            st["message"] = "the export Job succeeded but left no report in its termination message"
    return Outcome(_with_times(st, state), created)


def _export_report(kube: Kube, owner: b.Owner, job_name: str) -> dict[str, Any] | None:
    pods = kube.list("v1", "Pod", owner.namespace, f"batch.kubernetes.io/job-name={job_name}")
    for pod in sorted(
        pods, key=lambda p: p["metadata"].get("creationTimestamp") or "", reverse=True
    ):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or {}
            report = s.export_report(term.get("message"))
            if report:
                return report
    return None


RECONCILERS: dict[str, Callable[[Kube, Settings, dict[str, Any]], Outcome]] = {
    "SupernetTraining": reconcile_training,
    "NASSearch": reconcile_search,
    "SubnetExport": reconcile_export,
}


def run(kind: str, kube: Kube, settings: Settings, body: dict[str, Any]) -> Outcome:
    """``kind``'s reconcile; an error only a user can fix (e.g. a child's name taken by a
    stranger: NameConflict) becomes Failed with the error's class as the reason."""
    try:
        return RECONCILERS[kind](kube, settings, body)
    except Gen5NasError as exc:
        old = body.get("status") or {}
        gen = body["metadata"].get("generation")
        return Outcome(s.phase_status(old, s.FAILED, type(exc).__name__, str(exc), gen))

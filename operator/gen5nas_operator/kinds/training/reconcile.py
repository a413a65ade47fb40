"""Reconcile a SupernetTraining: pick the backend (PyTorchJob when the Kubeflow training
operator serves it, else an Indexed Job; sticky once chosen), make the children and the
namespace's workload identity, and report the job's phase and rank 0's progress."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kubernetes.client.exceptions import ApiException

from gen5nas.errors import Gen5NasError
from gen5nas.spec.training import SupernetTrainingSpec
from gen5nas.train.progress_report import ANNOTATION as PROGRESS_ANNOTATION
from gen5nas_operator.common import conditions as c
from gen5nas_operator.common.child_state import job_pods, job_state
from gen5nas_operator.common.ensure import (
    Outcome,
    child_roles,
    ensure,
    parse_spec,
    read_body,
    refused,
    with_times,
)
from gen5nas_operator.common.ownership import Owner, child_name, selector, work_dir
from gen5nas_operator.kinds.training import children as ch
from gen5nas_operator.kinds.training import status as ts
from gen5nas_operator.settings import Settings

if TYPE_CHECKING:
    from gen5nas_operator.kube import Kube

log = logging.getLogger(__name__)


def training_backend(kube: Kube, settings: Settings, old: dict[str, Any]) -> str:
    if old.get("backend"):
        return str(old["backend"])  # sticky: a running training never switches
    if settings.training_backend == "pytorchjob":
        return "PyTorchJob"
    if settings.training_backend == "indexedjob":
        return "IndexedJob"
    return "PyTorchJob" if kube.serves("kubeflow.org/v1", "pytorchjobs") else "IndexedJob"


def reconcile_training(kube: Kube, settings: Settings, body: dict[str, Any]) -> Outcome:
    owner, old, gen = read_body(body)
    try:
        spec: SupernetTrainingSpec = parse_spec(SupernetTrainingSpec, body)
        spec.search_space.resolve()
    except Gen5NasError as exc:
        return Outcome(c.invalid_spec(old, str(exc), gen))
    backend = training_backend(kube, settings, old)
    if not spec.runtime.service_account_name:
        ensure_workload_identity(kube, owner.namespace)
    manifests = ch.training_children(
        owner, spec, body["spec"], settings, use_pytorchjob=backend == "PyTorchJob"
    )
    created = ensure(kube, owner, manifests)
    job_name = child_name(owner, "train")
    if backend == "PyTorchJob":
        state = ts.pytorchjob_state(
            kube.get("kubeflow.org/v1", "PyTorchJob", owner.namespace, job_name)
        )
    else:
        job = kube.get("batch/v1", "Job", owner.namespace, job_name)
        state = job_state(job, job_pods(kube, owner.namespace, job_name) if job else [])
    st = c.phase_status(old, state.phase, state.reason, state.message, gen)
    st.update(
        task=spec.task.value,
        epochs=spec.schedule.epochs,
        workers=spec.runtime.workers,
        gpusPerWorker=spec.runtime.gpus_per_worker,
        backend=backend,
        workDir=work_dir(owner, spec.runtime),
        checkpoint=ch.training_checkpoint(owner, spec.runtime),
        children=child_roles(manifests),
    )
    progress = latest_progress(kube, owner)
    if progress is not None:
        st["progress"] = progress
    return Outcome(with_times(st, state), created)


def ensure_workload_identity(kube: Kube, namespace: str) -> None:
    """The namespace's ServiceAccount + Role + RoleBinding for training pods, made when
    missing. Shared by every training and owned by none (no events on a CR); one that exists is
    left as it is, so an administrator may provide their own."""
    for m in ch.workload_identity(namespace):
        if kube.get(m["apiVersion"], m["kind"], namespace, m["metadata"]["name"]) is None:
            try:
                _, made = kube.create(m)
            except ApiException as exc:  # e.g. the operator may not create Roles here
                raise refused(exc, m, "create") from None
            if made:
                log.info("created %s %s/%s", m["kind"], namespace, m["metadata"]["name"])


_malformed: set[tuple[str, str]] = set()  # (pod uid, annotation) already logged


def latest_progress(kube: Kube, owner: Owner) -> dict[str, Any] | None:
    """The latest progress a training pod reports (only rank 0 writes one; a restarted group
    leaves older pods behind, so the newest ``updated`` wins). A malformed annotation is logged
    once and ignored."""
    labels = ",".join(f"{k}={v}" for k, v in selector(owner, "train").items())
    best: tuple[str, dict[str, Any]] | None = None
    for pod in kube.list("v1", "Pod", owner.namespace, labels):
        meta = pod.get("metadata") or {}
        raw = (meta.get("annotations") or {}).get(PROGRESS_ANNOTATION)
        if raw is None:
            continue
        try:
            progress = ts.training_progress(raw)
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

"""Reconcile a SubnetExport, in named steps: check the spec, resolve what it names (the
checkpoint of a SupernetTraining or NASSearch, and for a study trial that search's study and
DSN Secret), make the children, and copy the export pod's report into the status."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gen5nas.errors import Gen5NasError
from gen5nas.spec.common import GROUP_VERSION
from gen5nas.spec.export import SubnetExportSpec
from gen5nas.spec.search import NASSearchSpec
from gen5nas_operator.common import conditions as c
from gen5nas_operator.common.child_state import job_pods, job_state
from gen5nas_operator.common.ensure import (
    Outcome,
    blocked,
    child_roles,
    dependency,
    ensure,
    parse_spec,
    read_body,
    with_times,
)
from gen5nas_operator.common.ownership import Owner, child_name, work_dir
from gen5nas_operator.kinds.export import children as ch
from gen5nas_operator.kinds.export.status import export_report
from gen5nas_operator.kinds.search.reconcile import dsn_secret_of
from gen5nas_operator.settings import Settings

if TYPE_CHECKING:
    from gen5nas_operator.kube import Kube


def _parse(body: dict[str, Any]) -> SubnetExportSpec:
    spec: SubnetExportSpec = parse_spec(SubnetExportSpec, body)
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
    return spec


@dataclass
class _Resolved:
    """What the operator fills in for the export: spec overrides and the study DSN Secret."""

    checkpoint: str | None
    overrides: dict[str, Any] = field(default_factory=lambda: {"storage": None})
    dsn_secret: tuple[str, str] | None = None


def _resolve(
    kube: Kube, owner: Owner, spec: SubnetExportSpec, settings: Settings, old: dict[str, Any],
    gen: int | None, started: bool,
) -> _Resolved | Outcome:  # fmt: skip
    """Before the Job exists: wait for the resources the spec names to succeed. After: keep
    the checkpoint it was made with, and read the NASSearch's study again for a trial."""
    out = _Resolved(spec.checkpoint or old.get("checkpoint"))
    if not started:
        if spec.supernet_training:
            dep, phase, reason, why = dependency(
                kube, owner, "SupernetTraining", spec.supernet_training, "supernetTraining"
            )
            if phase:
                return blocked(old, phase, reason, why, gen)
            out.checkpoint = spec.checkpoint or (dep or {}).get("status", {}).get("checkpoint")
        if spec.nas_search:
            dep, phase, reason, why = dependency(
                kube, owner, "NASSearch", spec.nas_search, "nasSearch"
            )
            if phase:
                return blocked(old, phase, reason, why, gen)
            dep_status = (dep or {}).get("status") or {}
            out.checkpoint = out.checkpoint or dep_status.get("checkpoint")
            if spec.trial is not None:
                out.overrides["studyName"] = dep_status.get("studyName")
                out.dsn_secret = dsn_secret_of(
                    parse_spec(NASSearchSpec, dep or {}).storage, settings
                )
    elif spec.trial is not None and spec.nas_search:
        dep = kube.get(GROUP_VERSION, "NASSearch", owner.namespace, spec.nas_search) or {}
        out.overrides["studyName"] = (dep.get("status") or {}).get("studyName")
        if dep:
            out.dsn_secret = dsn_secret_of(parse_spec(NASSearchSpec, dep).storage, settings)
    if not out.checkpoint:
        return blocked(old, c.WAITING, "WaitingForDependency", "no checkpoint known yet", gen)
    out.overrides["checkpoint"] = out.checkpoint
    return out


def _pod_report(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest export pod's report from its termination message."""
    for pod in sorted(
        pods, key=lambda p: p["metadata"].get("creationTimestamp") or "", reverse=True
    ):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or {}
            report = export_report(term.get("message"))
            if report:
                return report
    return None


def reconcile_export(kube: Kube, settings: Settings, body: dict[str, Any]) -> Outcome:
    owner, old, gen = read_body(body)
    try:
        spec = _parse(body)
    except Gen5NasError as exc:
        return Outcome(c.invalid_spec(old, str(exc), gen))

    job_name = child_name(owner, "export")
    job = kube.get("batch/v1", "Job", owner.namespace, job_name)
    resolved = _resolve(kube, owner, spec, settings, old, gen, started=job is not None)
    if isinstance(resolved, Outcome):
        return resolved  # waiting for, or failed with, what the spec names

    manifests = ch.export_children(
        owner, spec, body["spec"], settings, resolved.overrides, resolved.dsn_secret
    )
    created = ensure(kube, owner, manifests)
    job = job or kube.get("batch/v1", "Job", owner.namespace, job_name)
    pods = job_pods(kube, owner.namespace, job_name) if job else []
    state = job_state(job, pods)
    st = c.phase_status(old, state.phase, state.reason, state.message, gen)
    st.update(
        checkpoint=resolved.checkpoint,
        workDir=work_dir(owner, spec.runtime),
        children=child_roles(manifests),
    )
    if spec.trial is not None:
        st["trial"] = spec.trial
    if state.phase in c.TERMINAL:
        report = _pod_report(pods)
        if report:
            st.update(report)
        elif state.phase == c.SUCCEEDED:
            st["message"] = "the export Job succeeded but left no report in its termination message"
    return Outcome(with_times(st, state), created)

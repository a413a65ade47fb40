"""Reconcile a NASSearch, in named steps: check the spec, wait for the checkpoint (a
SupernetTraining's, unless the spec names one) and the study DSN's Secret, make the children,
read the study, decide the phase, and run the estimator's lifecycle (ready replicas while the
search runs; removed when it ends unless ``keepAfterCompletion``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gen5nas.errors import Gen5NasError
from gen5nas.search import outputs as search_outputs
from gen5nas.spec.search import NASSearchSpec, StorageSpec
from gen5nas_operator.common import conditions as c
from gen5nas_operator.common.child_state import ChildState, job_state
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
from gen5nas_operator.kinds.search import children as ch
from gen5nas_operator.kinds.search.status import study_status
from gen5nas_operator.settings import Settings
from gen5nas_operator.study import StudyUnavailable, read_trials

if TYPE_CHECKING:
    from gen5nas_operator.kube import Kube

# The study user attr the search step sets once it has written its outputs: status key ->
# absolute path. A search Job that completed without it did not finish its work.
OUTPUTS_ATTR = search_outputs.OUTPUTS_ATTR
OUTPUT_KEYS = tuple(search_outputs.OUTPUT_STATUS_KEYS.values())
ESTIMATOR_KINDS = (("Deployment", "apps/v1"), ("Service", "v1"))


def dsn_secret_of(storage: StorageSpec, settings: Settings) -> tuple[str, str]:
    """(Secret name, key) holding the study DSN: the spec's, else the operator's default."""
    if storage.secret_name:
        return storage.secret_name, storage.secret_key
    return settings.dsn_secret, settings.dsn_secret_key


def _parse(body: dict[str, Any]) -> NASSearchSpec:
    spec: NASSearchSpec = parse_spec(NASSearchSpec, body)
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
    return spec


def _checkpoint(
    kube: Kube, owner: Owner, spec: NASSearchSpec, old: dict[str, Any], gen: int | None,
    started: bool,
) -> str | Outcome:  # fmt: skip
    """The checkpoint to search, or the outcome to wait (or fail) with. Once the Job exists the
    checkpoint it was made with stays, whatever the SupernetTraining does since."""
    checkpoint = spec.checkpoint or old.get("checkpoint")
    if spec.supernet_training and not started:
        dep, phase, why = dependency(kube, owner, "SupernetTraining", spec.supernet_training)
        if phase:
            return blocked(old, phase, why, gen)
        checkpoint = (dep or {}).get("status", {}).get("checkpoint")
    if not checkpoint:
        return blocked(old, c.WAITING, "the SupernetTraining has no checkpoint yet", gen)
    return str(checkpoint)


@dataclass
class _Study:
    """What the study says: status fields, complete trials, the outputs the search recorded."""

    fields: dict[str, Any] = field(default_factory=dict)
    complete: int = 0
    recorded: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def _read_study(dsn: str, name: str, spec: NASSearchSpec, settings: Settings) -> _Study:
    try:
        found = read_trials(dsn, name)
    except StudyUnavailable as exc:
        return _Study(error=str(exc))
    if found is None:
        return _Study()
    trials, attrs = found
    out = _Study(fields=study_status(trials, spec, settings.front_top))
    out.complete = out.fields["trials"]["complete"]
    if isinstance(attrs.get(OUTPUTS_ATTR), dict):  # the search records what it wrote
        out.recorded = attrs[OUTPUTS_ATTR]
    return out


def _default_outputs(work: str) -> dict[str, str]:
    return {
        "paretoHtml": f"{work}/{search_outputs.HTML_NAME}",
        "paretoPng": f"{work}/{search_outputs.PNG_NAME}",
        "subnetsCsv": f"{work}/{search_outputs.CSV_NAME}",
        "studyPkl": f"{work}/{search_outputs.PICKLE_NAME}",
        "fixSubnets": f"{work}/{search_outputs.FIX_SUBNETS}/",
    }


def _phase(state: ChildState, study: _Study, name: str) -> tuple[str, str, str]:
    """(phase, reason, message): the Job's, except that a Job which completed without a complete
    trial or without recording its outputs did not do its work."""
    phase, reason, message = state.phase, state.reason, state.message
    if phase == c.SUCCEEDED and study.complete == 0:
        return (
            c.FAILED,
            "NoCompleteTrials",
            study.error
            or (f"the search Job completed but study {name} has no complete trial, so no outputs"),
        )
    if phase == c.SUCCEEDED and (missing := [k for k in OUTPUT_KEYS if not study.recorded.get(k)]):
        return (
            c.FAILED,
            "NoOutputs",
            (
                f"the search Job completed but study {name} does not record its outputs "
                f"(study user attr {OUTPUTS_ATTR!r} lacks {', '.join(missing)}; the search step "
                "sets it after writing them): see the search Job's logs"
            ),
        )
    if phase == c.RUNNING and study.error:
        message = study.error
    return phase, reason, message


def _estimator_lifecycle(
    kube: Kube, owner: Owner, spec: NASSearchSpec, st: dict[str, Any], gen: int | None
) -> list[str]:
    """``status.estimator`` and its EstimatorReady condition; deletes the estimator of a
    finished search unless it is to be kept. Returns the children deleted."""
    if spec.estimator.servers:
        st["estimator"] = {
            "endpoints": [f"{x.host}:{p}" for x in spec.estimator.servers for p in x.ports]
        }
        return []
    name = child_name(owner, "estimator")
    st["estimator"] = {
        "service": name,
        "endpoints": [
            f"{e['host']}:{p}" for e in ch.estimator_endpoints(owner, spec) for p in e["ports"]
        ],
        "removed": False,
    }
    deleted = []
    if st["phase"] in c.TERMINAL and not spec.estimator.keep_after_completion:
        for kind, api in ESTIMATOR_KINDS:
            if kube.delete(api, kind, owner.namespace, name):
                deleted.append(f"{kind}/{name}")
        st["estimator"]["removed"] = True
        st["conditions"] = c.set_condition(
            st["conditions"], "EstimatorReady", False, "Removed",
            "the search finished; set spec.estimator.keepAfterCompletion to keep it", gen,
        )  # fmt: skip
    else:
        dep = kube.get("apps/v1", "Deployment", owner.namespace, name) or {}
        ready = (dep.get("status") or {}).get("readyReplicas") or 0
        st["conditions"] = c.set_condition(
            st["conditions"], "EstimatorReady", ready > 0,
            "ReplicasReady" if ready else "NoReadyReplica",
            f"{ready}/{spec.estimator.replicas} estimator replicas ready", gen,
        )  # fmt: skip
    return deleted


def reconcile_search(kube: Kube, settings: Settings, body: dict[str, Any]) -> Outcome:
    owner, old, gen = read_body(body)
    try:
        spec = _parse(body)
    except Gen5NasError as exc:
        return Outcome(c.invalid_spec(old, str(exc), gen))

    # Dependencies: the checkpoint, then the study DSN.
    job_name = child_name(owner, "search")
    job = kube.get("batch/v1", "Job", owner.namespace, job_name)
    checkpoint = _checkpoint(kube, owner, spec, old, gen, started=job is not None)
    if isinstance(checkpoint, Outcome):
        return checkpoint  # waiting for, or failed with, the SupernetTraining
    secret = dsn_secret_of(spec.storage, settings)
    dsn = kube.secret_value(owner.namespace, *secret)
    if dsn is None:
        why = (
            f"waiting for Secret {secret[0]} with key {secret[1]!r} (the study DSN) in "
            f"namespace {owner.namespace}"
        )
        return Outcome(c.phase_status(old, c.WAITING, "SecretMissing", why, gen))

    # Children: a finished search gets no estimator back unless it is to be kept.
    manifests = ch.search_children(owner, spec, body["spec"], settings, checkpoint, secret)
    state = job_state(job)
    wanted = manifests
    if state.phase in c.TERMINAL and not spec.estimator.keep_after_completion:
        estimator = {k for k, _ in ESTIMATOR_KINDS}
        wanted = [m for m in manifests if m["kind"] not in estimator]
    created = ensure(kube, owner, wanted)
    if job is None:
        state = job_state(kube.get("batch/v1", "Job", owner.namespace, job_name))

    # The study, then the phase it and the Job give.
    study_name = ch.study_name(owner, spec)
    work = work_dir(owner, spec.runtime)
    st: dict[str, Any] = {
        "studyName": study_name,
        "checkpoint": checkpoint,
        "workDir": work,
        "children": child_roles(manifests),
        "outputs": _default_outputs(work),
    }
    study = _read_study(dsn, study_name, spec, settings)
    st.update(study.fields)
    st["outputs"].update({k: str(v) for k, v in study.recorded.items()})
    st.update(c.phase_status(old, *_phase(state, study, study_name), gen))

    deleted = _estimator_lifecycle(kube, owner, spec, st, gen)
    return Outcome(with_times(st, state), created, deleted)

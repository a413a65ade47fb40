"""Reconcile a NASSearch, in named steps: check the spec, wait for the checkpoint (a
SupernetTraining's, unless the spec names one) and the study DSN's Secret, make the children,
read the study, decide the phase, and run the estimator's lifecycle (ready replicas while the
search runs; removed when it ends unless ``keepAfterCompletion``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gen5nas.errors import Gen5NasError
from gen5nas.search import outputs as search_outputs
from gen5nas.search.study import redact
from gen5nas.spec.search import NASSearchSpec, StorageSpec
from gen5nas_operator.common import conditions as c
from gen5nas_operator.common.child_state import ChildState, job_pods, job_state
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
from gen5nas_operator.kinds.search.status import COST_UNITS, study_status
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


def _job_checkpoint(job: dict[str, Any]) -> str | None:
    """The ``--checkpoint`` the search Job was made with."""
    containers = job.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or [{}]
    command = containers[0].get("command") or []
    return command[command.index("--checkpoint") + 1] if "--checkpoint" in command[:-1] else None


def _checkpoint(
    kube: Kube, owner: Owner, spec: NASSearchSpec, old: dict[str, Any], gen: int | None,
    job: dict[str, Any] | None,
) -> str | Outcome:  # fmt: skip
    """The checkpoint to search, or the outcome to wait (or fail) with. Once the Job exists the
    checkpoint it was made with stays, whatever the SupernetTraining (or a reference changed
    before the status left Waiting) says since."""
    checkpoint = (job and _job_checkpoint(job)) or spec.checkpoint or old.get("checkpoint")
    if spec.supernet_training and job is None:
        dep, phase, reason, why = dependency(
            kube, owner, "SupernetTraining", spec.supernet_training, "supernetTraining"
        )
        if phase:
            return blocked(old, phase, reason, why, gen)
        checkpoint = (dep or {}).get("status", {}).get("checkpoint")
    if not checkpoint:
        why = "the SupernetTraining has no checkpoint yet"
        return blocked(old, c.WAITING, "WaitingForDependency", why, gen)
    return str(checkpoint)


@dataclass
class _Study:
    """What the study says: status fields, complete trials, the outputs the search recorded."""

    where: str  # the storage, without its password
    fields: dict[str, Any] = field(default_factory=dict)
    found: bool = False
    complete: int = 0
    recorded: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def _read_study(dsn: str, name: str, spec: NASSearchSpec, settings: Settings) -> _Study:
    where = redact(dsn)
    try:
        found = read_trials(dsn, name)
    except StudyUnavailable as exc:
        return _Study(where, error=str(exc))
    if found is None:
        return _Study(where)
    trials, attrs = found
    out = _Study(where, fields=study_status(trials, spec, settings.front_top, attrs), found=True)
    out.complete = out.fields["trials"]["complete"]
    if isinstance(attrs.get(OUTPUTS_ATTR), dict):  # the search records what it wrote
        out.recorded = attrs[OUTPUTS_ATTR]
    return out


def _phase(state: ChildState, study: _Study, name: str) -> tuple[str, str, str]:
    """(phase, reason, message): the Job's, except that a Job which completed without a complete
    trial or without recording its outputs did not do its work."""
    phase, reason, message = state.phase, state.reason, state.message
    if phase == c.SUCCEEDED and study.error:
        return c.FAILED, "StudyUnavailable", f"the search Job completed but {study.error}"
    if phase == c.SUCCEEDED and not study.found:
        return (
            c.FAILED,
            "StudyNotFound",
            f"the search Job completed but study {name} was not found in {study.where} (the "
            "DSN Secret's database): the workers wrote elsewhere, or it was deleted; see the "
            "search Job's logs",
        )
    if phase == c.SUCCEEDED and study.complete == 0:
        return (
            c.FAILED,
            "NoCompleteTrials",
            f"the search Job completed but study {name} in {study.where} has no complete "
            "trial, so no outputs: see the search Job's logs",
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


def _estimator_available(kube: Kube, owner: Owner, spec: NASSearchSpec) -> tuple[bool, str]:
    """(serving, why): the estimator Deployment has an available replica (its pods pass the
    gRPC readiness probe). Servers the spec names are the user's to run: taken as serving."""
    if spec.estimator.servers:
        return True, "the spec names the estimator servers"
    dep = kube.get("apps/v1", "Deployment", owner.namespace, child_name(owner, "estimator"))
    st = (dep or {}).get("status") or {}
    available = st.get("availableReplicas") or 0
    why = f"{available}/{spec.estimator.replicas} estimator replicas available"
    if not available:
        progressing: dict[str, Any] = next(
            (x for x in st.get("conditions") or [] if x.get("type") == "Progressing"), {}
        )
        if progressing.get("status") == "False":  # e.g. ProgressDeadlineExceeded
            why += f" ({progressing.get('reason')}: {progressing.get('message', '')})"
    return available > 0, why


def _estimator_lifecycle(
    kube: Kube, owner: Owner, spec: NASSearchSpec, st: dict[str, Any], gen: int | None,
    serving: tuple[bool, str],
) -> list[str]:  # fmt: skip
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
        ok, why = serving
        st["conditions"] = c.set_condition(
            st["conditions"], "EstimatorReady", ok,
            "ReplicasAvailable" if ok else "NoAvailableReplica", why, gen,
        )  # fmt: skip
    return deleted


def _scale(
    kube: Kube, job: dict[str, Any] | None, spec: NASSearchSpec, state: ChildState
) -> tuple[int | None, list[tuple[str, str, str]]]:
    """The search Job's parallelism, set to the spec's while it runs (parallelism is mutable
    on a Job; maxTrials is fixed once the search left Waiting, by the CRD). Returns (the Job's
    parallelism, events)."""
    if job is None:
        return None, []
    meta = job["metadata"]
    have = (job.get("spec") or {}).get("parallelism")
    if have == spec.parallelism or state.phase in c.TERMINAL:
        return have, []
    kube.patch("batch/v1", "Job", meta["namespace"], meta["name"],
               {"spec": {"parallelism": spec.parallelism}})  # fmt: skip
    note = (
        f"search Job {meta['name']}: parallelism {have} -> {spec.parallelism} (the Job "
        "starts or stops workers; once one worker has finished it starts no new ones)"
    )
    return spec.parallelism, [("Normal", "Scaled", note)]


def reconcile_search(kube: Kube, settings: Settings, body: dict[str, Any]) -> Outcome:
    owner, old, gen = read_body(body)
    try:
        spec = _parse(body)
    except Gen5NasError as exc:
        return Outcome(c.invalid_spec(old, str(exc), gen))

    # Dependencies: the checkpoint, then the study DSN.
    job_name = child_name(owner, "search")
    job = kube.get("batch/v1", "Job", owner.namespace, job_name)
    checkpoint = _checkpoint(kube, owner, spec, old, gen, job)
    if isinstance(checkpoint, Outcome):
        return checkpoint  # waiting for, or failed with, the SupernetTraining
    secret = dsn_secret_of(spec.storage, settings)
    dsn = kube.secret_value(owner.namespace, *secret)
    if dsn is None:
        why = (
            f"Secret {secret[0]} with key {secret[1]!r} (the study DSN) not found in namespace "
            f"{owner.namespace}: create it (kubectl -n {owner.namespace} create secret generic "
            f"{secret[0]} --from-literal={secret[1]}=postgresql+psycopg2://USER:PASS@HOST:5432/DB)"
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
    job = job or kube.get("batch/v1", "Job", owner.namespace, job_name)
    state = job_state(job, job_pods(kube, owner.namespace, job_name) if job else [])
    parallelism, events = _scale(kube, job, spec, state)

    # The study, then the phase it, the Job and the estimator give.
    study_name = ch.study_name(owner, spec)
    cost_key = spec.cost_key.value
    st: dict[str, Any] = {
        "studyName": study_name,
        "checkpoint": checkpoint,
        "workDir": work_dir(owner, spec.runtime),
        "children": child_roles(manifests),
        "costKey": cost_key,
        "costUnit": COST_UNITS[cost_key],
        "maxTrials": spec.max_trials,
    }
    if spec.cost_scope is not None:  # else the task's, which the study records once it exists
        st["costScope"] = spec.cost_scope.value
    if parallelism is not None:
        st["parallelism"] = parallelism
    study = _read_study(dsn, study_name, spec, settings)
    st.update(study.fields)
    st.setdefault("progress", f"0/{spec.max_trials}")  # no study yet: the workers make it
    if study.recorded:  # paths appear once the search step has written them
        st["outputs"] = {k: str(v) for k, v in study.recorded.items()}
    phase, reason, message = _phase(state, study, study_name)
    serving = _estimator_available(kube, owner, spec)
    ready = None
    if phase == c.RUNNING and not serving[0]:
        ready, reason = False, "EstimatorNotAvailable"
        message = f"{message}; the estimator does not serve yet: {serving[1]}"
    st.update(c.phase_status(old, phase, reason, message, gen, ready=ready))

    deleted = _estimator_lifecycle(kube, owner, spec, st, gen, serving)
    return Outcome(with_times(st, state), created, deleted, events)

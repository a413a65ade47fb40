"""kopf handlers: a few lines each. The logic is in ``reconcile`` (one function per kind),
``builders`` (spec -> children) and ``status`` (children + study -> status).

Every kind gets the same reconcile from four triggers: create, resume (operator restart),
update of the spec, and a timer (child Jobs and the study change without touching the CR).
Reconcile finds children by name before creating, so any trigger may run any time.
"""

from __future__ import annotations

import copy
from typing import Any

import kopf

from gen5nas.errors import Gen5NasError
from gen5nas.spec.common import API_GROUP, API_VERSION
from gen5nas_operator import status as s
from gen5nas_operator.crdgen import KINDS
from gen5nas_operator.kube import Kube
from gen5nas_operator.reconcile import RECONCILERS, Outcome, dsn_secret_of
from gen5nas_operator.settings import Settings, configure_kopf
from gen5nas_operator.study import StudyUnavailable, delete_study

SETTINGS = Settings.from_env()
_state: dict[str, Kube] = {}


def kube() -> Kube:
    if "kube" not in _state:
        _state["kube"] = Kube.from_environment()
    return _state["kube"]


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, logger: kopf.Logger, **_: Any) -> None:
    configure_kopf(settings, SETTINGS)
    kube()
    logger.info("gen5nas operator: namespaces=%s", SETTINGS.namespaces or "all")


def reconcile(kind: str, body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger) -> None:
    raw = copy.deepcopy(dict(body))
    old = raw.get("status") or {}
    try:
        outcome = RECONCILERS[kind](kube(), SETTINGS, raw)
    except Gen5NasError as exc:  # e.g. a child's name is taken by a stranger: a user must act
        gen = raw["metadata"].get("generation")
        outcome = Outcome(s.phase_status(old, s.FAILED, type(exc).__name__, str(exc), gen))
    for child in outcome.created:
        kopf.info(body, reason="Created", message=f"created {child}")
    for child in outcome.deleted:
        kopf.info(body, reason="Deleted", message=f"deleted {child}")
    new = outcome.status
    if new.get("phase") != old.get("phase"):
        event = kopf.warn if new.get("phase") == s.FAILED else kopf.info
        event(body, reason=str(new.get("phase")), message=str(new.get("message") or new["phase"]))
        logger.info("phase %s -> %s", old.get("phase"), new.get("phase"))
    changed = {k: v for k, v in new.items() if old.get(k) != v}
    if changed:
        patch.setdefault("status", {}).update(changed)


def _settled(body: kopf.Body) -> bool:
    """Terminal and up to date: the timer has nothing left to do."""
    st = body.get("status") or {}
    return st.get("phase") in s.TERMINAL and st.get("observedGeneration") == body["metadata"].get(
        "generation"
    )


def _register(kind: str, plural: str) -> None:
    res = (API_GROUP, API_VERSION, plural)

    def on_change(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
        reconcile(kind, body, patch, logger)

    def on_timer(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
        if not _settled(body):
            reconcile(kind, body, patch, logger)

    kopf.on.create(*res, id="reconcile-create")(on_change)
    kopf.on.resume(*res, id="reconcile-resume")(on_change)
    kopf.on.update(*res, id="reconcile-update", field="spec")(on_change)
    kopf.timer(*res, id="reconcile-timer", interval=SETTINGS.reconcile_interval_s,
               initial_delay=1.0)(on_timer)  # fmt: skip


for _kind in KINDS:
    _register(_kind.kind, _kind.plural)


# A finalizer only where cleanup outside Kubernetes is asked for: kopf adds it to the NASSearch
# objects this handler's `when` filter matches (deleteStudyOnDelete: true), and no others.
@kopf.on.delete(
    API_GROUP, API_VERSION, "nassearches", id="delete-study",
    when=lambda spec, **_: bool(spec.get("deleteStudyOnDelete")),
)  # fmt: skip
def delete_study_on_delete(
    body: kopf.Body, spec: kopf.Spec, status: kopf.Status, retry: int, logger: kopf.Logger,
    **_: Any,
) -> None:  # fmt: skip
    from gen5nas.spec.search import StorageSpec

    study = status.get("studyName")
    if not study:
        return  # never started: nothing to delete
    storage = StorageSpec.model_validate(dict(spec.get("storage") or {}))
    name, key = dsn_secret_of(storage, SETTINGS)
    dsn = kube().secret_value(body["metadata"]["namespace"], name, key)
    try:
        if dsn is None:
            raise StudyUnavailable(f"Secret {name} (key {key!r}) is gone")
        deleted = delete_study(dsn, study)
    except StudyUnavailable as exc:
        if retry < 5:
            raise kopf.TemporaryError(str(exc), delay=10) from None
        # Giving up must not block the deletion forever; the study stays in the database.
        logger.warning("study %s was not deleted: %s", study, exc)
        return
    logger.info("study %s %s", study, "deleted" if deleted else "was already gone")

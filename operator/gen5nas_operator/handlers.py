"""kopf handlers: a few lines each. The logic is per kind in ``kinds/<kind>/`` (its reconcile,
its children, its status), dispatched by ``reconcile``; ``resync`` applies an outcome and runs
the periodic loop.

Every kind gets the same sync (``resync.sync``) from four triggers: create, resume (operator
restart), update of the spec, and the operator's own resync loop (child Jobs and the study change
without touching the CR), started here on kopf's event loop. Reconcile finds children by name
before creating, so any trigger may run any time.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import kopf

from gen5nas.spec.common import API_GROUP, API_VERSION
from gen5nas_operator import resync
from gen5nas_operator.kinds import KINDS, KINDS_BY_NAME
from gen5nas_operator.kinds.search.reconcile import dsn_secret_of
from gen5nas_operator.kube import Kube
from gen5nas_operator.settings import Settings, configure_kopf
from gen5nas_operator.study import StudyUnavailable, delete_study

SETTINGS = Settings.from_env()
_state: dict[str, Kube] = {}
_tasks: dict[str, asyncio.Task[None]] = {}


def kube() -> Kube:
    if "kube" not in _state:
        _state["kube"] = Kube.from_environment()
    return _state["kube"]


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, logger: kopf.Logger, **_: Any) -> None:
    configure_kopf(settings, SETTINGS)
    kube()
    logger.info("gen5nas operator: namespaces=%s", SETTINGS.namespaces or "all")


# Not kopf.timer: kopf holds its finalizer on every object a timer matches, with no opt-out.
@kopf.on.startup()
async def start_resync(**_: Any) -> None:
    _tasks["resync"] = asyncio.create_task(resync.resync_forever(kube(), SETTINGS))


@kopf.on.cleanup()
async def stop_resync(**_: Any) -> None:
    task = _tasks.pop("resync", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _register(kind: str, plural: str) -> None:
    res = (API_GROUP, API_VERSION, plural)

    def on_change(body: kopf.Body, **_: Any) -> None:
        meta = body["metadata"]
        resync.sync(kube(), SETTINGS, kind, meta["namespace"], meta["name"])

    # None of these makes kopf add a finalizer.
    kopf.on.create(*res, id="reconcile-create")(on_change)
    kopf.on.resume(*res, id="reconcile-resume")(on_change)
    kopf.on.update(*res, id="reconcile-update", field="spec")(on_change)


for _kind in KINDS:
    _register(_kind.kind, _kind.plural)


# The one finalizer, only where cleanup outside Kubernetes is asked for: kopf adds it to the
# NASSearch objects this handler's `when` filter matches (deleteStudyOnDelete: true), no others.
@kopf.on.delete(
    API_GROUP, API_VERSION, KINDS_BY_NAME["NASSearch"].plural, id="delete-study",
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

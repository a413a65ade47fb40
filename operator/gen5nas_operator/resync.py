"""Reconcile one resource and apply the outcome (``sync``: the one way the kopf handlers and the
resync loop both do it), and the resync loop itself.

Child Jobs and the Optuna study change without touching the custom resource, so something must
reconcile periodically. Not a kopf timer: kopf puts its finalizer on every object a timer or
daemon matches, with no opt-out (nolar/kopf#1074), so deleting an active resource would hang
while the operator is down. The loop here is the operator's own and adds no finalizer: every
``reconcile_interval_s`` it lists each kind in the watched namespaces and syncs what is not
settled. No kopf import: the loop and ``sync`` run on the plain API client.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import weakref
from typing import Any

from gen5nas.spec.common import GROUP_VERSION
from gen5nas_operator.common.conditions import (
    FAILED,
    TERMINAL,
    WARNING_REASONS,
    condition,
    now_iso,
)
from gen5nas_operator.kinds import KINDS
from gen5nas_operator.kube import Kube
from gen5nas_operator.metrics import METRICS
from gen5nas_operator.reconcile import Outcome, run
from gen5nas_operator.settings import Settings

log = logging.getLogger(__name__)

COMPONENT = "gen5nas-operator"
MAX_EVENT_MESSAGE = 1024  # longer messages are cut in the middle (as kopf does)

# One sync per object at a time: a kopf handler and the loop racing on one object would each
# read the other's stale status (duplicate phase events, a condition's lastTransitionTime reset).
_locks: weakref.WeakValueDictionary[tuple[str, str, str], threading.Lock] = (
    weakref.WeakValueDictionary()
)
_locks_guard = threading.Lock()


def settled(body: dict[str, Any]) -> bool:
    """Terminal and up to date: periodic reconciling has nothing left to do."""
    st = body.get("status") or {}
    return st.get("phase") in TERMINAL and st.get("observedGeneration") == body["metadata"].get(
        "generation"
    )


def _lock(key: tuple[str, str, str]) -> threading.Lock:
    with _locks_guard:
        lock = _locks.get(key)
        if lock is None:
            lock = _locks[key] = threading.Lock()
        return lock


def sync(kube: Kube, settings: Settings, kind: str, namespace: str, name: str) -> Outcome | None:
    """Read the resource afresh, reconcile it and apply the outcome; None when it is gone or
    being deleted (its children go with it by owner reference)."""
    with _lock((kind, namespace, name)), METRICS.reconcile(kind) as record:
        body = kube.get(GROUP_VERSION, kind, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        outcome = run(kind, kube, settings, body)
        apply(kube, body, outcome)
        record(outcome)
        return outcome


def apply(kube: Kube, body: dict[str, Any], outcome: Outcome) -> None:
    """Events for the children made or deleted, the outcome's own, and a change of phase or,
    within a phase, of its reason or message; then the status fields that changed, through the
    status subresource."""
    meta = body["metadata"]
    old = body.get("status") or {}
    new = outcome.status
    # Events first: if the status patch fails, the next sync posts a phase event again rather
    # than never (the children it created are found by name next time and not reported again).
    for child in outcome.created:
        post_event(kube, body, "Normal", "Created", f"created {child}")
    for child in outcome.deleted:
        post_event(kube, body, "Normal", "Deleted", f"deleted {child}")
    for type_, reason, message in outcome.events:
        post_event(kube, body, type_, reason, message)
    reason = condition(new, "Ready").get("reason") or ""
    warn = new.get("phase") == FAILED or reason in WARNING_REASONS
    text = str(new.get("message") or new.get("phase"))
    if new.get("phase") != old.get("phase"):
        post_event(kube, body, "Warning" if warn else "Normal", str(new.get("phase")), text)
        log.info("%s %s/%s: phase %s -> %s", body["kind"], meta["namespace"], meta["name"],
                 old.get("phase"), new.get("phase"))  # fmt: skip
    elif reason != (condition(old, "Ready").get("reason") or "") or new.get("message") != old.get(
        "message"
    ):
        post_event(kube, body, "Warning" if warn else "Normal", reason or "Updated", text)
    changed = {k: v for k, v in new.items() if old.get(k) != v}
    if changed:
        kube.patch(GROUP_VERSION, body["kind"], meta["namespace"], meta["name"],
                   {"status": changed}, subresource="status")  # fmt: skip


def _cut(message: str) -> str:
    if len(message) <= MAX_EVENT_MESSAGE:
        return message
    half = (MAX_EVENT_MESSAGE - 3) // 2
    return f"{message[:half]}...{message[-half:]}"


def post_event(kube: Kube, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
    """A core/v1 Event on the resource (`kubectl describe`, `kubectl get events`)."""
    meta = body["metadata"]
    now = now_iso()
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": body["apiVersion"], "kind": body["kind"], "name": meta["name"],
            "namespace": meta["namespace"], "uid": meta["uid"],
        },
        "type": type_, "reason": reason, "message": _cut(message),
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT, "reportingInstance": socket.gethostname()[:128],
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }  # fmt: skip
    try:
        kube.create(event)
    except Exception as exc:  # events are auxiliary: never fail a sync over one
        log.warning("could not post event %s on %s %s: %s", reason, body["kind"], meta["name"], exc)


def resync_pass(kube: Kube, settings: Settings) -> int:
    """Sync every unsettled resource of each kind in the watched namespaces (all when none are
    set). A failure is logged and the pass goes on. Returns how many were synced."""
    done = 0
    listed_all = True
    scopes: list[str | None] = list(settings.namespaces) or [None]
    for kind in KINDS:
        for namespace in scopes:
            try:
                items = kube.list(GROUP_VERSION, kind.kind, namespace)
            except Exception:
                log.exception("resync: listing %s in %s failed", kind.plural, namespace or "all")
                listed_all = False
                continue
            METRICS.listed(kind.kind, namespace, items)
            for body in items:
                if settled(body):
                    continue
                meta = body["metadata"]
                try:
                    if sync(kube, settings, kind.kind, meta["namespace"], meta["name"]):
                        done += 1
                except Exception:
                    log.exception("resync: %s %s/%s failed", kind.kind, meta["namespace"],
                                  meta["name"])  # fmt: skip
    if listed_all:
        METRICS.resync_succeeded()
    return done


async def resync_forever(kube: Kube, settings: Settings) -> None:
    """Run ``resync_pass`` in a thread every ``reconcile_interval_s`` until cancelled."""
    while True:
        await asyncio.sleep(settings.reconcile_interval_s)
        try:
            await asyncio.to_thread(resync_pass, kube, settings)
        except Exception:  # resync_pass catches per object; this is a last resort
            log.exception("resync pass failed")

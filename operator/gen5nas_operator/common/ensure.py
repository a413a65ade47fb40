"""Steps every kind's reconcile shares: read the body, parse the spec, wait on another
resource, create the children that are missing (``ensure``: by name, so a restart creates no
duplicates, and never over a stranger's object), and the ``Outcome`` a reconcile returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from gen5nas.errors import Gen5NasError
from gen5nas.spec.common import GROUP_VERSION
from gen5nas.spec.space import parse_model
from gen5nas_operator.common.child_state import ChildState
from gen5nas_operator.common.conditions import FAILED, SUCCEEDED, WAITING, phase_status
from gen5nas_operator.common.ownership import Owner

if TYPE_CHECKING:
    from gen5nas_operator.kube import Kube


@dataclass
class Outcome:
    status: dict[str, Any]
    created: list[str] = field(default_factory=list)  # "Kind/name" of children made now
    deleted: list[str] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)


class NameConflict(Gen5NasError):
    """An object with a child's name exists and belongs to something else."""


class ChildRejected(Gen5NasError):
    """The API server refused a child as invalid (e.g. a resource quantity it cannot parse):
    the same spec makes the same child, so nothing changes until the spec does (Failed)."""


class ChildRefused(Exception):
    """The API server refused a child for now (forbidden, a quota, throttling, its own error):
    the resource waits and the next reconcile tries again."""


def refused(exc: ApiException, manifest: dict[str, Any], verb: str) -> Exception:
    """The status-ready error for an API server's refusal of ``manifest``."""
    from gen5nas_operator.kube import PERMANENT_REFUSALS, refusal_message

    what = f"{manifest['kind']} {manifest['metadata']['name']}"
    message = f"the API server refused to {verb} {what}: {refusal_message(exc)}"
    if exc.status in PERMANENT_REFUSALS:
        return ChildRejected(message)
    return ChildRefused(message)


def parse_spec(model: type, body: dict[str, Any]) -> Any:
    """The spec model, or a Gen5NasError naming the field."""
    try:
        return parse_model(model, body.get("spec") or {}, source="spec")
    except ValidationError as exc:  # parse_model raises SpecError; belt and braces
        raise Gen5NasError(str(exc)) from None


def ensure(kube: Kube, owner: Owner, manifests: list[dict[str, Any]]) -> list[str]:
    """Create what is missing; keep ConfigMaps in step with the spec; never touch what is not
    ours. Returns the children created by this call. A child the API server refuses raises
    ChildRejected (invalid) or ChildRefused (for now), with the API server's message."""
    created = []
    for m in manifests:
        meta = m["metadata"]
        existing = kube.get(m["apiVersion"], m["kind"], meta["namespace"], meta["name"])
        if existing is None:
            try:
                existing, made = kube.create(m)
            except ApiException as exc:
                raise refused(exc, m, "create") from None
            if made:
                created.append(f"{m['kind']}/{meta['name']}")
        refs = existing.get("metadata", {}).get("ownerReferences") or []
        if not any(r.get("uid") == owner.uid for r in refs):
            raise NameConflict(
                f"{m['kind']} {meta['name']} already exists and is not owned by this "
                f"{owner.kind}; delete or rename it"
            )
        if m["kind"] == "ConfigMap" and existing.get("data") != m["data"]:
            try:
                kube.patch("v1", "ConfigMap", meta["namespace"], meta["name"], {"data": m["data"]})
            except ApiException as exc:
                raise refused(exc, m, "update") from None
    return created


def child_roles(manifests: list[dict[str, Any]]) -> dict[str, str]:
    role = {"ConfigMap": "spec", "Job": "job", "PyTorchJob": "job", "Deployment": "estimator"}
    out = {}
    for m in manifests:
        key = role.get(m["kind"]) or (
            "estimatorService" if "estimator" in m["metadata"]["name"] else "service"
        )
        out[key] = m["metadata"]["name"]
    return out


def with_times(st: dict[str, Any], state: ChildState) -> dict[str, Any]:
    if state.start_time:
        st["startTime"] = state.start_time
    if state.completion_time:
        st["completionTime"] = state.completion_time
    return st


def dependency(
    kube: Kube, owner: Owner, kind: str, name: str, spec_field: str
) -> tuple[dict[str, Any] | None, str | None, str, str]:
    """(the resource, a phase to wait in or fail with, the reason, why)."""
    dep = kube.get(GROUP_VERSION, kind, owner.namespace, name)
    if dep is None:
        return None, WAITING, "DependencyNotFound", (
            f"{kind} {name} not found in namespace {owner.namespace}: create it, or point "
            f"spec.{spec_field} at another (it may change while this {owner.kind} is Waiting)"
        )  # fmt: skip
    phase = (dep.get("status") or {}).get("phase")
    if phase == FAILED:
        return dep, FAILED, "DependencyFailed", f"{kind} {name} failed"
    if phase != SUCCEEDED:
        why = f"waiting for {kind} {name} to succeed (it is {phase or 'not reconciled yet'})"
        return dep, WAITING, "WaitingForDependency", why
    return dep, None, "", ""


def blocked(old: dict, phase: str, reason: str, why: str, gen: int | None) -> Outcome:
    return Outcome(phase_status(old, phase, reason, why, gen))


def read_body(body: dict[str, Any]) -> tuple[Owner, dict[str, Any], int | None]:
    return (
        Owner.from_body(body),
        dict(body.get("status") or {}),
        body["metadata"].get("generation"),
    )

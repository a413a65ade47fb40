"""The custom resource a child belongs to, and how a child is named, labelled and owned."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from gen5nas.spec.common import GROUP_VERSION, RuntimeSpec

MANAGED_BY = "gen5nas-operator"
LABEL_OWNER_UID = "gen5nas.io/owner-uid"
LABEL_OWNER_KIND = "gen5nas.io/owner-kind"
LABEL_COMPONENT = "app.kubernetes.io/component"
MAX_NAME = 52  # a Job's pods get a 63-char label from its name plus a suffix


@dataclass(frozen=True)
class Owner:
    """The custom resource a child belongs to."""

    kind: str
    name: str
    namespace: str
    uid: str

    @classmethod
    def from_body(cls, body: Any) -> Owner:
        meta = body["metadata"]
        return cls(body["kind"], meta["name"], meta["namespace"], meta["uid"])


def child_name(owner: Owner, role: str) -> str:
    """``<owner>-<role>``, the role said once (a NASSearch ``x-search`` has the Job ``x-search``,
    not ``x-search-search``), shortened with a hash when too long for a DNS label."""
    name = owner.name if owner.name.endswith(f"-{role}") else f"{owner.name}-{role}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME - 9].rstrip('-.')}-{digest}"


def labels(owner: Owner, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "gen5nas",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/instance": owner.name[:63].rstrip("-."),
        LABEL_COMPONENT: component,
        LABEL_OWNER_KIND: owner.kind.lower(),
        LABEL_OWNER_UID: owner.uid,
    }


def selector(owner: Owner, component: str) -> dict[str, str]:
    return {LABEL_OWNER_UID: owner.uid, LABEL_COMPONENT: component}


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(owner: Owner, role: str, component: str) -> dict[str, Any]:
    return {
        "name": child_name(owner, role),
        "namespace": owner.namespace,
        "labels": labels(owner, component),
        "ownerReferences": [owner_reference(owner)],
    }


def work_dir(owner: Owner, runtime: RuntimeSpec) -> str:
    """This resource's directory on the results PVC: ``<mount>/<namespace>/<name>``."""
    return f"{runtime.results_mount_path.rstrip('/')}/{owner.namespace}/{owner.name}"

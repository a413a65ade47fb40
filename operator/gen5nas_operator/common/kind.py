"""One row of the table of kinds (``gen5nas_operator.kinds.KINDS``): what the CRD generator,
the reconcile dispatch and the API paths read about a custom resource kind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from gen5nas.spec.common import API_GROUP

if TYPE_CHECKING:
    from gen5nas_operator.common.ensure import Outcome
    from gen5nas_operator.kube import Kube
    from gen5nas_operator.settings import Settings

    Reconcile = Callable[[Kube, Settings, dict[str, Any]], Outcome]


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    short_names: list[str]
    spec_model: type[BaseModel]
    immutable: list[str]  # dotted paths under spec: fixed once the resource exists
    columns: list[dict[str, Any]]
    reconcile: Reconcile
    status_extra: dict[str, Any] = field(default_factory=dict)  # this kind's status fields
    # Top-level spec fields that may change while the resource is Waiting (a dependency that
    # does not exist can be pointed elsewhere) and are fixed once it has left Waiting.
    fixed_after_waiting: list[str] = field(default_factory=list)

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{API_GROUP}"

"""The cluster administrator's policy on what a resource's author may choose for the pods the
operator makes: images, service account, the DSN Secret, PVCs, mount paths, tolerations and node
selectors.

The operator runs with more rights than a resource's author needs (it creates Jobs, Roles,
ServiceAccounts), so everything in a spec that reaches a pod is checked here first: a user who
may create a NASSearch gets pods that run the administrator's images as the administrator's
accounts on the administrator's volumes and nodes, nothing more. The policy comes from the chart's
``policy`` values as JSON in ``GEN5NAS_POLICY``; a violation fails the resource with reason
``PolicyViolation`` and a message ``policy: <field>: ...`` naming what is allowed. The threat
model is in operator/README.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gen5nas.errors import Gen5NasError, SpecError
from gen5nas.spec.common import MOUNT_PATH_PATTERN, RuntimeSpec, Toleration, unmountable
from gen5nas.spec.space import parse_model

if TYPE_CHECKING:
    from gen5nas_operator.settings import Settings

ANY = "*"


class PolicyViolation(Gen5NasError):
    """A spec asks for something the operator's policy does not allow."""


class AllowedToleration(BaseModel):
    """A toleration a spec may carry: ``key`` must match (``*``: any toleration at all); each
    other field, when set, must match too (unset: any)."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1)
    operator: str | None = None
    value: str | None = None
    effect: str | None = None

    def allows(self, t: Toleration) -> bool:
        if self.key == ANY:
            return True
        return t.key == self.key and all(
            mine is None or mine == theirs
            for mine, theirs in (
                (self.operator, t.operator), (self.value, t.value), (self.effect, t.effect)
            )
        )  # fmt: skip

    def describe(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in self.model_dump(exclude={"key"}).items() if v)
        return f"{self.key}({extra})" if extra else self.key


def _describe(items: Any) -> str:
    return ", ".join(map(str, items)) if items else "none"


def mount_path_problem(path: str) -> str | None:
    """Why ``path`` cannot be a mount path whatever the roots (None: it can); the spec model's
    rule, which the CRDs carry too."""
    if not re.fullmatch(MOUNT_PATH_PATTERN, path):
        return "must be an absolute, normalized path (no '.', '..', '//' or trailing '/')"
    if directory := unmountable(path):
        return f"lies in {directory}, a directory the pod's image or the operator uses"
    return None


class Policy(BaseModel):
    """The chart's ``policy`` values. Defaults: the project's images, no service account and no
    DSN Secret but the operator's own, the chart's two PVCs or one labelled ``gen5nas.io/allowed=true``, GPU-node
    tolerations and selectors, mounts under /data and /results."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    allowed_image_prefixes: list[str] = Field(
        default_factory=lambda: ["ghcr.io/gen5nas/"], alias="allowedImagePrefixes"
    )
    allowed_service_accounts: list[str] = Field(
        default_factory=list, alias="allowedServiceAccounts"
    )
    allowed_dsn_secrets: list[str] = Field(default_factory=list, alias="allowedDsnSecrets")
    allowed_pvcs: list[str] = Field(
        default_factory=lambda: ["gen5nas-results", "gen5nas-datasets"], alias="allowedPvcs"
    )
    allowed_pvc_label: str = Field(default="gen5nas.io/allowed=true", alias="allowedPvcLabel")
    allowed_tolerations: list[AllowedToleration] = Field(
        default_factory=lambda: [AllowedToleration(key="nvidia.com/gpu")],
        alias="allowedTolerations",
    )
    allowed_node_selectors: dict[str, list[str]] = Field(
        default_factory=lambda: {"nvidia.com/gpu.product": [ANY]}, alias="allowedNodeSelectors"
    )
    mount_roots: list[str] = Field(
        default_factory=lambda: ["/data", "/results"], alias="mountRoots"
    )

    @field_validator("allowed_image_prefixes")
    @classmethod
    def _prefixes_end_at_a_boundary(cls, value: list[str]) -> list[str]:
        for prefix in value:
            # "ghcr.io/team" would also admit "ghcr.io/team-evil/..."; a boundary closes that.
            if prefix != ANY and not prefix.endswith(("/", ":", "@")):
                raise ValueError(f"{prefix!r}: end each prefix with '/', ':' or '@' (or use '*')")
        return value

    @field_validator("allowed_pvc_label")
    @classmethod
    def _label_is_key_value(cls, value: str) -> str:
        if value and (value.count("=") != 1 or value.startswith("=")):
            raise ValueError(f"{value!r}: use key=value, or empty for no label")
        return value

    @field_validator("mount_roots")
    @classmethod
    def _roots_are_safe(cls, value: list[str]) -> list[str]:
        for root in value:
            if problem := mount_path_problem(root):
                raise ValueError(f"{root!r} {problem}")
        return value

    @classmethod
    def from_json(cls, text: str, source: str = "GEN5NAS_POLICY") -> Policy:
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise SpecError(f"not JSON: {exc}", field=source) from None
        if not isinstance(raw, dict):
            raise SpecError("expected a JSON object", field=source)
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5]
            )
            raise SpecError(problems, field=source) from None

    # ---- the checks; each returns the violations it finds -----------------------------------
    def image_violations(self, field: str, image: str | None, own: tuple[str, ...]) -> list[str]:
        if image is None or image in own or ANY in self.allowed_image_prefixes:
            return []
        if any(image.startswith(p) for p in self.allowed_image_prefixes):
            return []
        return [
            f"{field}: image {image!r} is not allowed; images must start with one of: "
            f"{_describe(self.allowed_image_prefixes)} (policy.allowedImagePrefixes)"
        ]

    def service_account_violations(self, name: str | None, own: str) -> list[str]:
        if name is None or name == own or name in self.allowed_service_accounts:
            return []
        allowed = _describe([own, *self.allowed_service_accounts])
        return [
            f"spec.runtime.serviceAccountName: {name!r} is not allowed; allowed: {allowed} "
            "(policy.allowedServiceAccounts)"
        ]

    def secret_violations(self, name: str | None, own: str) -> list[str]:
        if name is None or name == own or name in self.allowed_dsn_secrets:
            return []
        allowed = _describe([own, *self.allowed_dsn_secrets])
        return [
            f"spec.storage.secretName: Secret {name!r} is not allowed (its value would reach the "
            f"pods); allowed: {allowed} (policy.allowedDsnSecrets)"
        ]

    def pvc_violations(
        self, field: str, claim: str | None, own: str, labels: Callable[[str], dict | None]
    ) -> list[str]:
        if claim is None or claim == own or claim in self.allowed_pvcs:
            return []
        if self.allowed_pvc_label:
            key, _, value = self.allowed_pvc_label.partition("=")
            if (labels(claim) or {}).get(key) == value:
                return []
        label = f" or a PVC labelled {self.allowed_pvc_label}" if self.allowed_pvc_label else ""
        return [
            f"{field}: PVC {claim!r} is not allowed; allowed: "
            f"{_describe(dict.fromkeys([own, *self.allowed_pvcs]))}{label} (policy.allowedPvcs, "
            "policy.allowedPvcLabel)"
        ]

    def mount_violations(self, field: str, path: str) -> list[str]:
        problem = mount_path_problem(path)
        if problem is None and not any(
            path == r or path.startswith(r.rstrip("/") + "/") for r in self.mount_roots
        ):
            problem = f"is under none of {_describe(self.mount_roots)} (policy.mountRoots)"
        return [f"{field}: mount path {path!r} {problem}"] if problem else []

    def toleration_violations(self, tolerations: list[Toleration]) -> list[str]:
        out = []
        for i, t in enumerate(tolerations):
            if not any(a.allows(t) for a in self.allowed_tolerations):
                shown = t.model_dump(by_alias=True, exclude_none=True)
                allowed = _describe(a.describe() for a in self.allowed_tolerations)
                out.append(
                    f"spec.runtime.tolerations[{i}]: {shown} is not allowed; allowed: {allowed} "
                    "(policy.allowedTolerations)"
                )
        return out

    def node_selector_violations(self, selector: Mapping[str, str]) -> list[str]:
        out = []
        for key, value in selector.items():
            values = self.allowed_node_selectors.get(key)
            if values is not None and (ANY in values or value in values):
                continue
            if values is None:
                allowed = _describe(
                    f"{k}={'|'.join(v)}" for k, v in self.allowed_node_selectors.items()
                )
            else:
                allowed = f"{key}={'|'.join(values)}"
            out.append(
                f"spec.runtime.nodeSelector.{key}: {key}={value} is not allowed; allowed: "
                f"{allowed} (policy.allowedNodeSelectors)"
            )
        return out


def violations(
    policy: Policy,
    settings: Settings,
    runtime: RuntimeSpec,
    estimator_image: str | None,
    dsn_secret: str | None,
    pvc_labels: Callable[[str], dict | None],
) -> list[str]:
    """Everything in ``runtime`` (and a NASSearch's estimator image and DSN Secret) the policy
    refuses."""
    from gen5nas_operator.kinds.training.children import WORKLOAD_SERVICE_ACCOUNT

    own_images = (settings.workload_image, settings.estimator_image)
    rt = "spec.runtime"
    return [
        *policy.image_violations(f"{rt}.image", runtime.image, own_images),
        *policy.image_violations("spec.estimator.image", estimator_image, own_images),
        *policy.service_account_violations(runtime.service_account_name, WORKLOAD_SERVICE_ACCOUNT),
        *policy.secret_violations(dsn_secret, settings.dsn_secret),
        *policy.pvc_violations(f"{rt}.resultsPvc", runtime.results_pvc, settings.results_pvc,
                               pvc_labels),
        *policy.pvc_violations(f"{rt}.datasetPvc", runtime.dataset_pvc, settings.results_pvc,
                               pvc_labels),
        *policy.mount_violations(f"{rt}.resultsMountPath", runtime.results_mount_path),
        *(policy.mount_violations(f"{rt}.datasetMountPath", runtime.dataset_mount_path)
          if runtime.dataset_pvc else []),
        *policy.toleration_violations(runtime.tolerations),
        *policy.node_selector_violations(runtime.node_selector),
    ]  # fmt: skip


def _string_at(raw: dict[str, Any], parent: str, key: str) -> str | None:
    """``raw[parent][key]`` when it is a string (a NASSearch's; other kinds have none)."""
    inner = raw.get(parent)
    value = inner.get(key) if isinstance(inner, dict) else None
    return value if isinstance(value, str) else None


def enforce(
    settings: Settings, raw_spec: dict[str, Any], pvc_labels: Callable[[str], dict | None]
) -> None:
    """Raise PolicyViolation (every violation, ``; ``-separated) when the spec asks for what the
    policy does not allow. A spec whose runtime does not parse is left to the kind's reconcile
    (InvalidSpec)."""
    try:
        runtime = parse_model(RuntimeSpec, raw_spec.get("runtime") or {}, source="spec.runtime")
    except Gen5NasError:
        return
    found = violations(
        settings.policy,
        settings,
        runtime,
        _string_at(raw_spec, "estimator", "image"),
        _string_at(raw_spec, "storage", "secretName"),
        pvc_labels,
    )
    if found:
        raise PolicyViolation("policy: " + "; ".join(found))

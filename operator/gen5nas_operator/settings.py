"""Operator settings, read once from the environment (the Helm chart sets them), and the kopf
settings the operator runs with. Every kopf choice is deliberate; operator/README.md explains
them."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gen5nas import __version__
from gen5nas.errors import SpecError
from gen5nas_operator.policy import Policy

if TYPE_CHECKING:
    import kopf

PREFIX = "GEN5NAS_"
FINALIZER = "gen5nas.io/cleanup-study"
ANNOTATION_PREFIX = "gen5nas.io"


@dataclass(frozen=True)
class Settings:
    """What the operator needs to know beyond the CRs. Field ``x`` comes from ``GEN5NAS_X``."""

    namespaces: list[str] = field(default_factory=list)  # empty: every namespace
    workload_image: str = f"ghcr.io/gen5nas/workload:{__version__}"
    estimator_image: str = f"ghcr.io/gen5nas/estimator:{__version__}"
    image_pull_policy: str = "IfNotPresent"
    results_pvc: str = "gen5nas-results"
    dsn_secret: str = "gen5nas-postgres"
    dsn_secret_key: str = "dsn"
    # auto: a PyTorchJob when the kubeflow.org/v1 API serves pytorchjobs, else an Indexed Job.
    training_backend: str = "auto"
    reconcile_interval_s: float = 15.0
    front_top: int = 10  # Pareto entries kept in status (the full front is on the PVC)
    rendezvous_port: int = 29500
    watch_server_timeout_s: int = 300
    # Prometheus /metrics ports (0 = not served): the operator's own, the estimator pods', and
    # the search and training pods' (gen5nas_operator.metrics, the workloads' --metrics-port).
    metrics_port: int = 0
    estimator_metrics_port: int = 9464
    workload_metrics_port: int = 9464
    # What a resource's author may choose for its pods (JSON of the chart's `policy` values).
    policy: Policy = field(default_factory=Policy)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for name, f in cls.__dataclass_fields__.items():
            raw = env.get(PREFIX + name.upper())
            if raw is None or raw == "":
                continue
            default = getattr(cls(), name)
            try:
                if isinstance(default, Policy):
                    values[name] = Policy.from_json(raw, source=PREFIX + name.upper())
                elif isinstance(default, list):
                    values[name] = [v.strip() for v in raw.split(",") if v.strip()]
                elif isinstance(default, bool):
                    values[name] = raw.lower() in ("1", "true", "yes")
                elif isinstance(default, int):
                    values[name] = int(raw)
                elif isinstance(default, float):
                    values[name] = float(raw)
                else:
                    values[name] = raw
            except SpecError:
                raise
            except ValueError:
                raise SpecError(
                    f"{raw!r} is not a valid {type(default).__name__}", field=PREFIX + name.upper()
                ) from None
            del f
        settings = cls(**values)  # type: ignore[arg-type]
        if settings.training_backend not in ("auto", "pytorchjob", "indexedjob"):
            raise SpecError(
                f"{settings.training_backend!r}: use auto, pytorchjob or indexedjob",
                field=PREFIX + "TRAINING_BACKEND",
            )
        for name in ("metrics_port", "estimator_metrics_port", "workload_metrics_port"):
            if not 0 <= getattr(settings, name) <= 65535:
                raise SpecError(
                    f"must be a TCP port (1-65535) or 0 (off), got {getattr(settings, name)}",
                    field=PREFIX + name.upper(),
                )
        if settings.reconcile_interval_s <= 0 or settings.front_top < 1:
            raise SpecError(
                "GEN5NAS_RECONCILE_INTERVAL_S must be > 0 and GEN5NAS_FRONT_TOP >= 1",
                field=PREFIX + "RECONCILE_INTERVAL_S",
            )
        return settings


def configure_kopf(kopf_settings: kopf.OperatorSettings, settings: Settings) -> None:
    """Apply the operator's kopf settings (see operator/README.md, "kopf settings")."""
    import kopf

    # Handler progress and the last-handled spec live in annotations under our own prefix, not in
    # status: status is the user's view (and schema-checked), and kopf's bookkeeping must survive
    # an operator restart without appearing in `kubectl get -o yaml` status.
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    kopf_settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    kopf_settings.persistence.finalizer = FINALIZER
    # One replica (the chart uses the Recreate strategy); peering would need kopf's own CRDs and
    # cluster RBAC only to pause a duplicate, and reconcile is idempotent anyway.
    kopf_settings.peering.standalone = True
    # The server ends each watch after this long and kopf re-lists: a silently dead connection
    # (a proxy or load balancer dropping it) can never stall the operator for longer.
    kopf_settings.watching.server_timeout = settings.watch_server_timeout_s
    kopf_settings.watching.client_timeout = settings.watch_server_timeout_s + 30
    kopf_settings.watching.connect_timeout = 30
    kopf_settings.watching.reconnect_backoff = 1.0
    kopf_settings.networking.request_timeout = 60
    # Only kopf's own warnings and errors become Kubernetes Events (this level gates kopf.info
    # and kopf.warn too); the operator posts its transitions (children created/deleted, phase
    # changes) as core/v1 Events itself (resync.post_event). Messages never carry the DSN.
    kopf_settings.posting.level = logging.WARNING
    # CRDs are installed before the operator starts (the chart's crds/); not watching CRDs and
    # namespaces saves two cluster-wide list/watch permissions.
    kopf_settings.scanning.disabled = True
    kopf_settings.execution.max_workers = 8

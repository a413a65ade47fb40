"""Training progress for ``kubectl get``: rank 0 writes it on its own pod, the operator copies
it into the SupernetTraining's ``status.progress``.

In a pod the operator made, ``GEN5NAS_POD_NAME``/``GEN5NAS_POD_NAMESPACE`` come from the
downward API and the pod's service account may patch pods; the reporter merge-patches the pod's
annotation ``gen5nas.io/progress`` with compact JSON (epoch = epochs completed)::

    {"epoch": 3, "epochs": 10, "iteration": 1500, "metric": "accuracy/top1",
     "maxScore": 71.2, "minScore": 60.4, "updated": "2025-01-01T00:00:00Z"}

``maxScore``/``minScore`` are the largest and smallest subnets' last validation figures of the
task's metric, which ``metric`` names (its ``Metric.label``: ``accuracy/top1``, ``coco/bbox_mAP``).

Plain urllib + ssl: the workload image has no Kubernetes client. Best-effort: a failure is
logged once at WARNING and never reaches the training loop; outside a pod nothing happens.
Overrides for tests: ``KUBERNETES_SERVICE_HOST``/``_PORT`` (the standard in-cluster variables)
and ``GEN5NAS_SERVICEACCOUNT_DIR`` (the folder holding ``token`` and ``ca.crt``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

log = logging.getLogger(__name__)

ANNOTATION = "gen5nas.io/progress"
POD_NAME_ENV = "GEN5NAS_POD_NAME"
POD_NAMESPACE_ENV = "GEN5NAS_POD_NAMESPACE"
SA_DIR_ENV = "GEN5NAS_SERVICEACCOUNT_DIR"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
MIN_INTERVAL_S = 10.0  # between unforced reports: the API server is not a metrics store
TIMEOUT_S = 5.0  # rank 0 holds the other ranks while it waits
BACKOFF_S = (60.0, 900.0)  # after a failure, skip reports this long (doubling up to the cap)


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def progress_document(
    epoch: int,
    epochs: int,
    iteration: int,
    max_score: float | None = None,
    min_score: float | None = None,
    metric: str | None = None,
    updated: str | None = None,
) -> dict[str, Any]:
    """The annotation's content; scores rounded to 4 significant figures (71.25 %, 0.3125
    mAP), absent before a validation."""
    doc: dict[str, Any] = {"epoch": int(epoch), "epochs": int(epochs), "iteration": int(iteration)}
    if metric:
        doc["metric"] = str(metric)
    for key, value in (("maxScore", max_score), ("minScore", min_score)):
        if value is not None and math.isfinite(value):
            doc[key] = float(f"{float(value):.4g}")
    doc["updated"] = updated or _now_iso()
    return doc


@dataclass
class ProgressReporter:
    """Patches one pod's progress annotation. ``clock`` is injectable for the throttle."""

    server: str  # https://host:port
    namespace: str
    pod: str
    token_file: Path
    ca_file: Path
    clock: Callable[[], float] = time.monotonic
    _last: float | None = field(default=None, init=False)
    _retry_at: float = field(default=-math.inf, init=False)
    _backoff: float = field(default=BACKOFF_S[0], init=False)
    _warned: bool = field(default=False, init=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProgressReporter | None:
        """The reporter for the pod this process runs in; None outside a pod (no pod name or
        namespace, no API server address)."""
        env = os.environ if environ is None else environ
        pod, namespace = env.get(POD_NAME_ENV), env.get(POD_NAMESPACE_ENV)
        host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
        if not (pod and namespace and host and port):
            return None
        if ":" in host:  # an IPv6 address
            host = f"[{host}]"
        sa_dir = Path(env.get(SA_DIR_ENV) or SA_DIR)
        return cls(f"https://{host}:{port}", namespace, pod, sa_dir / "token", sa_dir / "ca.crt")

    def report(
        self,
        epoch: int,
        epochs: int,
        iteration: int,
        max_score: float | None = None,
        min_score: float | None = None,
        metric: str | None = None,
        force: bool = False,
    ) -> bool:
        """Write the progress unless one was written less than ``MIN_INTERVAL_S`` ago (``force``:
        anyway, e.g. at an epoch's end) or a recent failure is backing off. True when written;
        never raises."""
        now = self.clock()
        if now < self._retry_at:
            return False
        if not force and self._last is not None and now - self._last < MIN_INTERVAL_S:
            return False
        doc = progress_document(epoch, epochs, iteration, max_score, min_score, metric)
        try:
            self._patch(doc)
        except Exception as exc:  # best-effort: nothing here may stop training
            self._retry_at = now + self._backoff
            self._backoff = min(self._backoff * 2, BACKOFF_S[1])
            level = logging.DEBUG if self._warned else logging.WARNING
            log.log(
                level,
                "could not report training progress on pod %s/%s (%s); training goes on, "
                "`kubectl get supernettraining` shows no progress until a report succeeds (the "
                "pod's service account needs `patch` on pods)",
                self.namespace,
                self.pod,
                _describe(exc),
            )
            self._warned = True
            return False
        self._last = now
        self._backoff = BACKOFF_S[0]
        return True

    def _patch(self, doc: dict[str, Any]) -> None:
        token = self.token_file.read_text().strip()
        context = ssl.create_default_context(cafile=str(self.ca_file))
        url = (
            f"{self.server}/api/v1/namespaces/{quote(self.namespace, safe='')}"
            f"/pods/{quote(self.pod, safe='')}"
        )
        body = {"metadata": {"annotations": {ANNOTATION: json.dumps(doc, separators=(",", ":"))}}}
        request = urllib.request.Request(
            url,
            data=json.dumps(body).encode(),
            method="PATCH",
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/merge-patch+json",
                "Accept": "application/json",
            },
        )
        with urllib.request.urlopen(request, context=context, timeout=TIMEOUT_S) as resp:
            resp.read()


def _describe(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        try:
            detail = json.loads(exc.read() or b"{}").get("message", "")
        except (ValueError, OSError):
            detail = ""
        return f"HTTP {exc.code}{': ' + detail if detail else ''}"
    return f"{type(exc).__name__}: {exc}"

"""A small REST layer over the official kubernetes client: get/create/patch/delete/list any
object by apiVersion and kind, and ask discovery whether an API is served. Manifests are plain
dicts, as the kinds' ``children`` modules make them."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from gen5nas_operator.kinds import KINDS

# kind -> plural, for every kind the operator touches: the built-in ones and the table of kinds.
PLURALS = {
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "Event": "events",
    "Service": "services",
    "Pod": "pods",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "ServiceAccount": "serviceaccounts",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "Job": "jobs",
    "Deployment": "deployments",
    "PyTorchJob": "pytorchjobs",
    **{k.kind: k.plural for k in KINDS},
}
DISCOVERY_TTL_S = 300.0
# Answers that hold until the request changes (an invalid or malformed object): retrying the same
# manifest cannot succeed. Anything else (forbidden, a quota, throttling, a server error) may pass
# on a later try.
PERMANENT_REFUSALS = (400, 422)


def refusal_message(exc: ApiException) -> str:
    """The API server's own words for a refused request (its Status ``message``), else the HTTP
    reason."""
    try:
        status = json.loads(exc.body or b"{}")
    except (TypeError, ValueError):
        status = {}
    message = status.get("message") if isinstance(status, dict) else None
    return str(message or f"{exc.status} {exc.reason}")


def _base(api_version: str) -> str:
    return f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"


def path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    """An object's or a collection's URL; namespace None: the collection in every namespace."""
    scope = f"/namespaces/{namespace}" if namespace is not None else ""
    out = f"{_base(api_version)}{scope}/{PLURALS[kind]}"
    return f"{out}/{name}" if name else out


class Kube:
    """One API client for the operator's process (thread-safe: urllib3 pools)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self._served: dict[str, tuple[float, bool]] = {}

    @classmethod
    def from_environment(cls, kubeconfig: str | None = None) -> Kube:
        """In-cluster credentials when running in a pod, else the kubeconfig."""
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config(config_file=kubeconfig)
        return cls(client.ApiClient())

    def _call(
        self,
        method: str,
        url: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        method, url, headers, body, post = self.api.param_serialize(
            method=method,
            resource_path=url,
            query_params=query or [],
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        resp = self.api.call_api(
            method, url, header_params=headers, body=body, post_params=post, _request_timeout=60
        )
        resp.read()
        if resp.status >= 400:
            raise ApiException(status=resp.status, reason=resp.reason, body=resp.data)
        return json.loads(resp.data) if resp.data else None

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict | None:
        try:
            return self._call("GET", path(api_version, kind, namespace, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create ``manifest``; when it already exists return the existing object.
        The flag says whether this call created it."""
        meta = manifest["metadata"]
        url = path(manifest["apiVersion"], manifest["kind"], meta["namespace"])
        try:
            return self._call("POST", url, body=manifest), True
        except ApiException as exc:
            if exc.status != 409:
                raise
        existing = self.get(
            manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"]
        )
        if existing is None:  # deleted between the two calls; the next reconcile creates it
            raise RuntimeError(f"{manifest['kind']} {meta['name']} vanished during create")
        return existing, False

    def patch(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        body: dict[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        url = path(api_version, kind, namespace, name) + (f"/{subresource}" if subresource else "")
        return self._call("PATCH", url, body=body, content_type="application/merge-patch+json")

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Delete (children in the background); False when it was already gone."""
        try:
            self._call(
                "DELETE",
                path(api_version, kind, namespace, name),
                body={"propagationPolicy": "Background"},
            )
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def list(
        self, api_version: str, kind: str, namespace: str | None, label_selector: str = ""
    ) -> list[dict[str, Any]]:
        """Objects of ``kind`` in ``namespace`` (None: every namespace), by label when given."""
        query = [("labelSelector", label_selector)] if label_selector else []
        out = self._call("GET", path(api_version, kind, namespace), query=query)
        return list(out.get("items") or [])

    def labels_of(self, api_version: str, kind: str, namespace: str, name: str) -> dict | None:
        """An object's labels; None when it is missing or the operator may not read it."""
        try:
            obj = self.get(api_version, kind, namespace, name)
        except ApiException as exc:
            if exc.status != 403:
                raise
            return None
        return dict((obj or {}).get("metadata", {}).get("labels") or {}) if obj else None

    def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        """A Secret's value, or None when the Secret or the key is missing."""
        secret = self.get("v1", "Secret", namespace, name)
        data = (secret or {}).get("data") or {}
        if key not in data:
            return None
        return base64.b64decode(data[key]).decode()

    def serves(self, api_version: str, plural: str) -> bool:
        """Whether discovery lists ``plural`` under ``api_version`` (cached a few minutes;
        discovery needs no RBAC beyond what every authenticated user has)."""
        key = f"{api_version}/{plural}"
        cached = self._served.get(key)
        if cached and time.monotonic() - cached[0] < DISCOVERY_TTL_S:
            return cached[1]
        try:
            found = any(
                r.get("name") == plural for r in self._call("GET", _base(api_version))["resources"]
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            found = False
        self._served[key] = (time.monotonic(), found)
        return found

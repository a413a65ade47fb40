"""A real Kubernetes control plane on loopback, the way controller-runtime's envtest runs one.

`start_kube_cluster()` starts etcd, kube-apiserver and (when it was built)
kube-controller-manager from the binaries `scripts/build-control-plane.sh` caches, on free
127.0.0.1 ports inside a temporary directory, and writes a kubeconfig for an admin user.

Auth: a static bearer token (`--token-auth-file`) for the user `gen5nas-admin` in the group
`system:masters`, with `--authorization-mode=RBAC` (as envtest does with its client-cert admin):
the admin bypasses RBAC, while service accounts and other users are really subject to it.
Serving certificates come from a throwaway CA made with `openssl`; the kubeconfig embeds it.
The ServiceAccount admission plugin is disabled (as in envtest) so objects with pod templates can
be created without waiting for the default service account. Nothing runs pods: there is no
kubelet or scheduler; tests play the kubelet's part by patching status.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._proc import SCRIPTS, Child, free_port, wait_until

BUILD_SCRIPT = SCRIPTS / "build-control-plane.sh"
ADMIN_USER = "gen5nas-admin"


def control_plane_binaries(build_if_missing: bool = True) -> dict[str, Path]:
    """Paths of the cached binaries: keys KUBE_APISERVER, ETCD, HELM, KUBE_CONTROLLER_MANAGER
    (the last only when built). Builds them with the script when some are missing, unless
    `build_if_missing` is false (then raises)."""
    res = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-paths"], capture_output=True, text=True, check=False
    )
    if res.returncode != 0:
        if res.returncode != 3 or not build_if_missing:
            raise RuntimeError(
                f"{BUILD_SCRIPT} --print-paths failed ({res.returncode}): {res.stderr.strip()}\n"
                f"run `bash {BUILD_SCRIPT}` first"
            )
        # Missing binaries: build them now (CI runs the script before pytest, so this is rare).
        res = subprocess.run(
            ["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False
        )
        if res.returncode != 0:
            raise RuntimeError(f"{BUILD_SCRIPT} failed with exit code {res.returncode}")
    paths: dict[str, Path] = {}
    for line in res.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and value:
            paths[key.strip()] = Path(value.strip())
    return paths


def kubectl_binary() -> str:
    """The kubectl on PATH (or /usr/bin/kubectl)."""
    found = shutil.which("kubectl") or (
        "/usr/bin/kubectl" if Path("/usr/bin/kubectl").exists() else None
    )
    if not found:
        raise RuntimeError("kubectl not found on PATH")
    return found


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_pki(pki: Path) -> None:
    """A CA, a serving cert for 127.0.0.1/localhost signed by it, and a service-account key."""
    pki.mkdir(parents=True)
    _openssl("genrsa", "-out", "ca.key", "2048", cwd=pki)
    _openssl(
        "req", "-x509", "-new", "-nodes", "-key", "ca.key", "-sha256", "-days", "2",
        "-subj", "/CN=gen5nas-test-ca", "-out", "ca.crt", cwd=pki,
    )  # fmt: skip
    _openssl("genrsa", "-out", "apiserver.key", "2048", cwd=pki)
    _openssl(
        "req", "-new", "-key", "apiserver.key", "-subj", "/CN=kube-apiserver",
        "-out", "apiserver.csr", cwd=pki,
    )  # fmt: skip
    (pki / "apiserver.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
        "DNS:kubernetes.default.svc,IP:10.0.0.1\n"
        "extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n"
    )
    _openssl(
        "x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-sha256", "-extfile", "apiserver.ext",
        "-out", "apiserver.crt", cwd=pki,
    )  # fmt: skip
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def _kubeconfig_text(server: str, ca_crt: Path, token: str) -> str:
    ca = base64.b64encode(ca_crt.read_bytes()).decode()
    return f"""apiVersion: v1
kind: Config
clusters:
- name: gen5nas-test
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {ADMIN_USER}
  user:
    token: {token}
contexts:
- name: gen5nas-test
  context:
    cluster: gen5nas-test
    user: {ADMIN_USER}
    namespace: default
current-context: gen5nas-test
"""


@dataclass
class KubeCluster:
    """A running test control plane. `env` is os.environ plus KUBECONFIG for subprocesses."""

    server: str
    kubeconfig: Path
    token: str
    ca_file: Path
    workdir: Path
    has_controller_manager: bool
    env: dict[str, str] = field(default_factory=dict)
    kubectl_path: str = "kubectl"

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; raises with its output when `check` and it fails."""
        cmd = [self.kubectl_path, "--kubeconfig", str(self.kubeconfig), *args]
        res = subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=timeout, env=self.env,
            check=False,
        )  # fmt: skip
        if check and res.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
            )
        return res

    def api_client(self) -> Any:
        """A `kubernetes.client.ApiClient` for this cluster (the official Python client)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def get(self, path: str, timeout: float = 10.0) -> bytes:
        """GET a raw API path (e.g. '/readyz') as the admin user."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        req = urllib.request.Request(
            self.server + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:
            return bytes(resp.read())


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return bool(resp.status == 200)


@contextmanager
def start_kube_cluster(
    workdir: Path | None = None,
    controller_manager: bool = True,
    extra_apiserver_args: Sequence[str] = (),
    start_timeout: float = 120.0,
) -> Iterator[KubeCluster]:
    """Start etcd + kube-apiserver (+ kube-controller-manager when built and requested), yield a
    KubeCluster once /readyz answers, and stop everything and remove the directory afterwards."""
    bins = control_plane_binaries()
    own_dir = workdir is None
    root = Path(tempfile.mkdtemp(prefix="gen5nas-kube-")) if workdir is None else workdir
    children: list[Child] = []
    try:
        pki = root / "pki"
        _make_pki(pki)
        token = secrets.token_hex(24)
        (root / "tokens.csv").write_text(f'{token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')

        # etcd: loopback only; fsync off since the data is throwaway (envtest does the same).
        etcd_port, peer_port = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        etcd = Child(
            "etcd",
            [
                str(bins["ETCD"]),
                "--name=default",
                f"--data-dir={root / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            root / "etcd.log",
            root,
        )
        children.append(etcd)
        wait_until("etcd /health", lambda: _http_ok(etcd_url + "/health"), start_timeout, children)

        port = free_port()
        server = f"https://127.0.0.1:{port}"
        apiserver = Child(
            "kube-apiserver",
            [
                str(bins["KUBE_APISERVER"]),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={root / 'apiserver-certs'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={root / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-account-issuer={server}/",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                "--disable-admission-plugins=ServiceAccount",
                "--v=1",
                *extra_apiserver_args,
            ],
            root / "kube-apiserver.log",
            root,
        )
        children.append(apiserver)
        kubeconfig = root / "kubeconfig"
        kubeconfig.write_text(_kubeconfig_text(server, pki / "ca.crt", token))
        kubeconfig.chmod(0o600)
        env = dict(os.environ)
        env["KUBECONFIG"] = str(kubeconfig)
        cluster = KubeCluster(
            server=server,
            kubeconfig=kubeconfig,
            token=token,
            ca_file=pki / "ca.crt",
            workdir=root,
            has_controller_manager=False,
            env=env,
            kubectl_path=kubectl_binary(),
        )
        wait_until(
            "kube-apiserver /readyz", lambda: cluster.get("/readyz") == b"ok", start_timeout,
            children,
        )  # fmt: skip

        kcm_bin = bins.get("KUBE_CONTROLLER_MANAGER")
        if controller_manager and kcm_bin is not None:
            kcm_port = free_port()
            kcm = Child(
                "kube-controller-manager",
                [
                    str(kcm_bin),
                    f"--kubeconfig={kubeconfig}",
                    f"--authentication-kubeconfig={kubeconfig}",
                    f"--authorization-kubeconfig={kubeconfig}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={kcm_port}",
                    f"--cert-dir={root / 'kcm-certs'}",
                    "--leader-elect=false",
                    f"--service-account-private-key-file={pki / 'sa.key'}",
                    f"--root-ca-file={pki / 'ca.crt'}",
                    "--use-service-account-credentials=false",
                    # Short resyncs keep garbage collection and the Job controller snappy.
                    "--concurrent-gc-syncs=5",
                    "--v=1",
                ],
                root / "kube-controller-manager.log",
                root,
            )
            children.append(kcm)

            def kcm_healthy() -> bool:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE  # self-signed serving cert of the KCM itself
                url = f"https://127.0.0.1:{kcm_port}/healthz"
                with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
                    return bool(resp.status == 200)

            wait_until("kube-controller-manager /healthz", kcm_healthy, start_timeout, children)
            cluster.has_controller_manager = True
        yield cluster
    finally:
        for child in reversed(children):
            child.stop()
        if own_dir:
            shutil.rmtree(root, ignore_errors=True)

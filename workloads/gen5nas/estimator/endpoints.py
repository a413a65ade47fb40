"""Where the estimator client sends requests: the servers setting parsed into gRPC targets, and
which failures another endpoint can answer.

``servers`` is the seed's list ``[{host, ports: [...]}, ...]`` (every host:port is an endpoint),
or one string: ``"host:port"``, ``"h1:p1,h2:p2"``, ``"dns:///name:port"`` or a gRPC
multi-address target (``"ipv4:10.0.0.1:50051,10.0.0.2:50051"``, ``"ipv6:[::1]:50051,[::1]:50052"``;
not split at commas). A host that is a DNS name, not an IP literal (``localhost`` included: it
may resolve to 127.0.0.1 and ::1), becomes a ``dns:///host:port`` endpoint that gRPC's
round-robin balancer spreads over every address the name resolves to: a Kubernetes headless
Service (``estimator.ns.svc``) resolves to its ready replicas. So do ipv4:/ipv6: targets.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

import grpc

from gen5nas.errors import SpecError

DEFAULT_PORT = 50051
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def retryable(err: grpc.RpcError) -> bool:
    code = err.code()
    if code in _RETRYABLE:
        return True
    details = err.details() or ""
    # A server at its concurrency bound, or one killed mid-request (stream reset: CANCELLED
    # "RST_STREAM", or UNKNOWN "Stream removed"): another endpoint can answer, and an estimate
    # is safe to ask twice. A model over the size limit is also RESOURCE_EXHAUSTED: not retried.
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "Concurrent RPC limit" in details:
        return True
    if code == grpc.StatusCode.UNKNOWN and "Stream removed" in details:
        return True
    return code == grpc.StatusCode.CANCELLED and "RST_STREAM" in details


def parse_servers(servers: Sequence[Mapping[str, Any] | str] | str) -> list[tuple[str, bool]]:
    """Endpoints as (gRPC target, balanced): ``balanced`` targets (a DNS name, an ipv4:/ipv6:
    list) may stand for many servers, spread over with round-robin. Errors name the entry and
    the expected format."""
    fmt = (
        "expected [{host: NAME, ports: [50051, ...]}, ...], 'host:port[,host:port...]', "
        "'dns:///name:port' or 'ipv4:addr:port,addr:port'"
    )
    if isinstance(servers, str):
        text = servers.strip()
        if text.startswith(_SCHEMES):
            return [_string_target(text, "servers")]
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts:
            raise SpecError(f"no servers given; {fmt}", "servers")
        return [_string_target(p, "servers") for p in parts]
    targets: list[tuple[str, bool]] = []
    for i, entry in enumerate(servers):
        if isinstance(entry, str):
            targets.append(_string_target(entry.strip(), f"servers[{i}]"))
            continue
        if not isinstance(entry, Mapping) or not entry.get("host"):
            raise SpecError(f"entry {entry!r} has no host; {fmt}", f"servers[{i}]")
        ports = entry.get("ports", [entry["port"]] if "port" in entry else [DEFAULT_PORT])
        if not isinstance(ports, list | tuple) or not ports:
            raise SpecError(f"ports must be a non-empty list, got {ports!r}", f"servers[{i}].ports")
        for port in ports:
            if not isinstance(port, int) or not 0 < port < 65536:
                raise SpecError(f"port {port!r} is not in 1..65535", f"servers[{i}].ports")
            targets.append(_host_target(str(entry["host"]), port))
    if not targets:
        raise SpecError(f"no servers given; {fmt}", "servers")
    return targets


# gRPC target schemes kept as given (https://grpc.github.io/grpc/core/md_doc_naming.html).
_SCHEMES = ("dns:", "ipv4:", "ipv6:")


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _host_target(host: str, port: int | str) -> tuple[str, bool]:
    if _is_ip(host):
        return f"{_bracket(host)}:{port}", False
    # A DNS name may stand for many replicas (a headless Service): resolve all, round-robin.
    return f"dns:///{host}:{port}", True


def _string_target(text: str, field: str) -> tuple[str, bool]:
    if text.startswith("dns:"):
        return text, True
    if text.startswith(("ipv4:", "ipv6:")):
        _check_addresses(text, field)
        return text, True
    host, sep, port = text.rpartition(":")
    if not sep or host.endswith(":") or not port.isdigit():
        host, port = text, str(DEFAULT_PORT)
    return _host_target(host, port)


def _check_addresses(target: str, field: str) -> None:
    """``ipv4:a:p,b:p`` / ``ipv6:[a]:p,[b]:p``: every address an IP of that family with a port
    (gRPC would otherwise fail later with a bare UNAVAILABLE, or default the port to 443)."""
    scheme, _, rest = target.partition(":")
    version = 4 if scheme == "ipv4" else 6
    example = "ipv4:10.0.0.1:50051,10.0.0.2:50051" if version == 4 else "ipv6:[::1]:50051"
    for address in rest.split(","):
        host, sep, port = address.strip().rpartition(":")
        try:
            ok = bool(sep) and port.isdigit() and 0 < int(port) < 65536
            ok = ok and ipaddress.ip_address(host.strip("[]")).version == version
            ok = ok and (version == 4 or host.startswith("["))  # [::1]:50051: port unambiguous
        except ValueError:
            ok = False
        if not ok:
            raise SpecError(
                f"{address!r} in {target!r} is not an IPv{version} address with a port; "
                f"expected e.g. {example!r}",
                field,
            )

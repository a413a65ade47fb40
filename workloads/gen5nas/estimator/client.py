"""The estimator client the search step uses: many endpoints, retries, a cache.

``servers`` is the seed's list ``[{host, ports: [...]}, ...]`` (every host:port is an endpoint;
concurrent requests go to the endpoint with the fewest in flight, ties in turn), or one string:
``"host:port"``, ``"h1:p1,h2:p2"``, ``"dns:///name:port"`` or a gRPC multi-address target
(``"ipv4:10.0.0.1:50051,10.0.0.2:50051"``, ``"ipv6:[::1]:50051,[::1]:50052"``; not split at
commas). A host that is a DNS name, not an IP literal (``localhost`` included: it may resolve
to 127.0.0.1 and ::1), becomes a ``dns:///host:port`` endpoint that gRPC's round-robin balancer
spreads over every address the name resolves to: a Kubernetes headless Service
(``estimator.ns.svc``) resolves to its ready replicas. So do ipv4:/ipv6: targets. A request
that fails with UNAVAILABLE or DEADLINE_EXCEEDED (or a busy server, or one that died mid-call)
is retried on another endpoint; answers are cached by (model hash, profile, overrides).
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import json
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import grpc

from gen5nas.errors import SpecError
from gen5nas.estimator._proto import estimator_pb2 as pb
from gen5nas.estimator._proto import estimator_pb2_grpc as pb_grpc
from gen5nas.estimator.errors import EstimatorRequestError, EstimatorUnavailable
from gen5nas.estimator.result import Estimate, LayerEstimate
from gen5nas.lru import LRU

DEFAULT_PORT = 50051
_BOUNDS = {pb.BOUND_COMPUTE: "compute", pb.BOUND_MEMORY: "memory", pb.BOUND_NONE: "none"}
_METRICS = {"latency": pb.METRIC_LATENCY, "energy": pb.METRIC_ENERGY}
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def _retryable(err: grpc.RpcError) -> bool:
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


@dataclass
class _Endpoint:
    target: str
    channel: grpc.Channel
    stub: pb_grpc.EstimatorStub
    in_flight: int = 0
    down_until: float = 0.0
    failures: int = 0
    served: int = 0


def estimate_from_proto(resp: pb.EstimateResponse, endpoint: str = "") -> Estimate:
    return Estimate(
        latency_ms=resp.latency_ms if resp.HasField("latency_ms") else None,
        energy_mj=resp.energy_mj if resp.HasField("energy_mj") else None,
        backend=resp.backend,
        profile=resp.profile,
        layers=[
            LayerEstimate(
                name=x.name,
                op_type=x.op_type,
                op_kind=x.op_kind,
                macs=x.macs,
                vector_ops=x.vector_ops,
                bytes_read=x.bytes_read,
                bytes_written=x.bytes_written,
                dram_bytes=x.dram_bytes,
                compute_cycles=x.compute_cycles,
                memory_cycles=x.memory_cycles,
                cycles=x.cycles,
                bound=_BOUNDS.get(x.bound, "none"),
                latency_ms=x.latency_ms,
                energy_mj=x.energy_mj,
                unsupported=x.unsupported,
            )
            for x in resp.layers
        ],
        estimator_version=resp.estimator_version,
        total_macs=resp.total_macs,
        total_bytes=resp.total_bytes,
        unsupported_ops=list(resp.unsupported_ops),
        model_sha256=resp.model_sha256,
        hw_config=dict(resp.hw_config),
        notes=list(resp.notes),
        endpoint=endpoint,
    )


class EstimatorClient:
    """Thread-safe; share one across a thread pool. ``retries`` = extra attempts per request."""

    def __init__(
        self,
        servers: list[dict] | str,
        profile: str,
        hw_config: dict | None = None,
        timeout_s: float = 30,
        retries: int = 3,
        *,
        backend: str = "",
        metrics: Sequence[str] = (),
        with_layers: bool = True,
        cache_size: int = 100_000,
        max_message_mb: int = 256,
    ) -> None:
        self.profile = profile
        self.hw_config = {str(k): float(v) for k, v in (hw_config or {}).items()}
        self.timeout_s = timeout_s
        self.retries = max(0, int(retries))
        self.backend = backend
        self.metrics = tuple(metrics)
        bad = [m for m in self.metrics if m not in _METRICS]
        if bad:
            raise SpecError(f"unknown metrics {bad}; allowed: {list(_METRICS)}", "metrics")
        self.with_layers = with_layers
        options: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", max_message_mb * 2**20),
            ("grpc.max_receive_message_length", max_message_mb * 2**20),
        ]
        self._endpoints: list[_Endpoint] = []
        for target, balanced in parse_servers(servers):
            opts = list(options)
            if balanced:
                config: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}
                opts.append(("grpc.service_config", json.dumps(config)))
            channel = grpc.insecure_channel(target, options=opts)
            self._endpoints.append(_Endpoint(target, channel, pb_grpc.EstimatorStub(channel)))
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self._cache: LRU[tuple, Estimate] = LRU(cache_size)
        self._pending: dict[tuple, Future] = {}
        self.stats = {"requests": 0, "cache_hits": 0, "rpcs": 0, "retries": 0}

    # ---- public API -----------------------------------------------------------------------
    @property
    def endpoints(self) -> list[str]:
        return [e.target for e in self._endpoints]

    def served_by_endpoint(self) -> dict[str, int]:
        with self._lock:
            return {e.target: e.served for e in self._endpoints}

    def estimate(
        self, onnx_bytes: bytes, input_shapes: Mapping[str, Sequence[int]] | None = None
    ) -> Estimate:
        """Latency/energy of an ONNX model (cached by the model's SHA-256)."""
        shapes = tuple(sorted((k, tuple(v)) for k, v in (input_shapes or {}).items()))
        key = ("onnx", hashlib.sha256(onnx_bytes).hexdigest(), shapes, *self._settings_key())

        def request() -> pb.EstimateRequest:
            req = self._request()
            req.onnx = onnx_bytes
            for name, dims in shapes:
                req.input_shapes.add(name=name, dims=list(dims))
            return req

        return self._cached(key, request)

    def estimate_arch(
        self, space_name: str, arch: Any, num_classes: int = 0, activation: str = "relu6"
    ) -> Estimate:
        """Latency/energy of an arch of a named search space (with the supernet's activation);
        the server builds its graph."""
        arch_yaml = arch if isinstance(arch, str) else arch.to_yaml()
        arch_key = arch_yaml if isinstance(arch, str) else arch.key()
        key = ("arch", space_name, arch_key, num_classes, activation, *self._settings_key())

        def request() -> pb.EstimateRequest:
            req = self._request()
            req.arch.space = space_name
            req.arch.arch_yaml = arch_yaml
            req.arch.num_classes = num_classes
            req.arch.activation = activation
            return req

        return self._cached(key, request)

    def list_hardware(self) -> pb.ListHardwareResponse:
        resp, _ = self._call(lambda stub, t: stub.ListHardware(pb.ListHardwareRequest(), timeout=t))
        return resp

    def close(self) -> None:
        for e in self._endpoints:
            e.channel.close()

    def __enter__(self) -> EstimatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- internals ------------------------------------------------------------------------
    def _settings_key(self) -> tuple:
        return (
            self.profile,
            tuple(sorted(self.hw_config.items())),
            self.backend,
            self.metrics,
            self.with_layers,
        )

    def _request(self) -> pb.EstimateRequest:
        return pb.EstimateRequest(
            profile=self.profile,
            hw_config=self.hw_config,
            metrics=[_METRICS[m] for m in self.metrics],
            backend=self.backend,
            omit_layers=not self.with_layers,
        )

    def _cached(self, key: tuple, make_request: Any) -> Estimate:
        with self._lock:
            self.stats["requests"] += 1
            cached = self._cache.get(key)
            if cached is not None:
                self.stats["cache_hits"] += 1
                return cached
            pending = self._pending.get(key)
            owner = pending is None
            if owner:
                pending = self._pending[key] = Future()
            else:
                self.stats["cache_hits"] += 1  # the same question is in flight: share its answer
        assert pending is not None
        if not owner:
            return pending.result()  # type: ignore[no-any-return]
        try:
            req = make_request()
            resp, target = self._call(lambda stub, t: stub.Estimate(req, timeout=t))
            est = estimate_from_proto(resp, target)
        except BaseException as exc:
            with self._lock:
                self._pending.pop(key, None)
            pending.set_exception(exc)
            raise
        with self._lock:
            self._cache.put(key, est)
            self._pending.pop(key, None)
        pending.set_result(est)
        return est

    def _pick(self, tried: set[int]) -> int:
        now = time.monotonic()
        with self._lock:
            candidates = [i for i in range(len(self._endpoints)) if i not in tried]
            if not candidates:
                candidates = list(range(len(self._endpoints)))
            up = [i for i in candidates if self._endpoints[i].down_until <= now] or candidates
            turn = next(self._turn)
            n = len(self._endpoints)
            # Fewest in flight first; among equals, the one next in turn (round-robin).
            best = min(up, key=lambda i: (self._endpoints[i].in_flight, (i - turn) % n))
            self._endpoints[best].in_flight += 1
            return best

    def _call(self, rpc: Any) -> tuple[Any, str]:
        tried: set[int] = set()
        errors: list[str] = []
        for attempt in range(self.retries + 1):
            if attempt:
                with self._lock:
                    self.stats["retries"] += 1
                if not tried:  # every endpoint failed this round: back off before the next
                    time.sleep(min(0.1 * 2**attempt, 2.0))
            i = self._pick(tried)
            ep = self._endpoints[i]
            tried.add(i)
            try:
                with self._lock:
                    self.stats["rpcs"] += 1
                resp = rpc(ep.stub, self.timeout_s)
            except grpc.RpcError as err:
                with self._lock:
                    ep.in_flight -= 1
                if not _retryable(err):
                    raise EstimatorRequestError(
                        f"estimator at {ep.target} refused the request: {err.code().name}: "
                        f"{err.details()}",
                        err.code().name,
                    ) from None
                with self._lock:
                    ep.failures += 1
                    ep.down_until = time.monotonic() + min(0.5 * 2 ** (ep.failures - 1), 10.0)
                errors.append(f"{ep.target}: {err.code().name}: {err.details()}")
                if len(tried) >= len(self._endpoints):
                    tried = set()  # every endpoint failed once: go round again
                continue
            with self._lock:
                ep.in_flight -= 1
                ep.failures = 0
                ep.down_until = 0.0
                ep.served += 1
            return resp, ep.target
        raise EstimatorUnavailable(
            f"no estimator answered after {self.retries + 1} attempts over "
            f"{len(self._endpoints)} endpoint(s) {self.endpoints}: {'; '.join(errors[-4:])}. "
            f"Check that the servers run (gen5nas estimator serve --port ...) and that the "
            f"estimator servers list is right."
        )

"""The estimator client the search step uses: many endpoints, retries, a cache.

``servers`` (parsed by ``endpoints.py``): concurrent requests go to the endpoint with the fewest
in flight, ties in turn; a ``dns:///`` or ipv4:/ipv6: endpoint is spread further by gRPC's
round-robin balancer. A request that fails with UNAVAILABLE or DEADLINE_EXCEEDED (or a busy
server, or one that died mid-call) is retried on another endpoint; answers are cached by (model
hash, profile, overrides).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import grpc

from gen5nas import __version__
from gen5nas.errors import SpecError
from gen5nas.estimator._proto import estimator_pb2 as pb
from gen5nas.estimator._proto import estimator_pb2_grpc as pb_grpc
from gen5nas.estimator.endpoints import parse_servers, retryable
from gen5nas.estimator.errors import EstimatorRequestError, EstimatorUnavailable
from gen5nas.estimator.estimate_proto import estimate_from_proto
from gen5nas.estimator.result import Estimate
from gen5nas.lru import LRU

_METRICS = {"latency": pb.METRIC_LATENCY, "energy": pb.METRIC_ENERGY}


@dataclass
class _Endpoint:
    target: str
    channel: grpc.Channel
    stub: pb_grpc.EstimatorStub
    in_flight: int = 0
    down_until: float = 0.0
    failures: int = 0
    served: int = 0


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
        self,
        space_name: str,
        arch: Any,
        num_classes: int = 0,
        activation: str = "relu6",
        scope: str = "network",
        task: str = "classification",
    ) -> Estimate:
        """Latency/energy of an arch of a named search space (with the supernet's activation)
        in cost ``scope`` (``network``, ``backbone``, ``detector``: ``task``'s whole static
        detector); the server builds its graph."""
        arch_yaml = arch if isinstance(arch, str) else arch.to_yaml()
        arch_key = arch_yaml if isinstance(arch, str) else arch.key()
        key = (
            "arch", space_name, arch_key, num_classes, activation, scope, task,
            *self._settings_key(),
        )  # fmt: skip

        def request() -> pb.EstimateRequest:
            req = self._request()
            req.arch.space = space_name
            req.arch.arch_yaml = arch_yaml
            req.arch.num_classes = num_classes
            req.arch.activation = activation
            req.arch.scope = scope
            req.arch.task = task
            return req

        est = self._cached(key, request)
        if scope != "network" and est.costed_scope() != scope:
            raise EstimatorRequestError(
                f"estimator at {est.endpoint} costed {est.costed_scope() or 'the whole network'}"
                f", not the {scope} asked for: it predates cost scopes; run an estimator of "
                f"this version (gen5nas-estimator/{__version__})",
                "FAILED_PRECONDITION",
            )
        return est

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
                if not retryable(err):
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

"""The gRPC servicer: translates ``EstimateRequest`` <-> :class:`EstimatorEngine` calls and maps
user errors to status codes (INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED...), so a bad
request is answered with an actionable message and the server keeps serving."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

import grpc

from gen5nas.errors import Gen5NasError
from gen5nas.estimator._proto import estimator_pb2 as pb
from gen5nas.estimator._proto import estimator_pb2_grpc as pb_grpc
from gen5nas.estimator.engine import ESTIMATOR_VERSION, EstimatorEngine
from gen5nas.estimator.errors import EstimatorError
from gen5nas.estimator.profiles import DEFAULT_PROFILE, HardwareProfile
from gen5nas.estimator.result import Estimate

log = logging.getLogger(__name__)

_METRICS = {pb.METRIC_LATENCY: "latency", pb.METRIC_ENERGY: "energy"}
_BOUNDS = {"compute": pb.BOUND_COMPUTE, "memory": pb.BOUND_MEMORY, "none": pb.BOUND_NONE}


def estimate_to_proto(est: Estimate) -> pb.EstimateResponse:
    resp = pb.EstimateResponse(
        backend=est.backend,
        profile=est.profile,
        estimator_version=est.estimator_version,
        total_macs=est.total_macs,
        total_bytes=est.total_bytes,
        unsupported_ops=est.unsupported_ops,
        model_sha256=est.model_sha256,
        hw_config=est.hw_config,
        notes=est.notes,
    )
    if est.latency_ms is not None:
        resp.latency_ms = est.latency_ms
    if est.energy_mj is not None:
        resp.energy_mj = est.energy_mj
    for layer in est.layers:
        resp.layers.add(
            name=layer.name,
            op_type=layer.op_type,
            op_kind=layer.op_kind,
            macs=layer.macs,
            vector_ops=layer.vector_ops,
            bytes_read=layer.bytes_read,
            bytes_written=layer.bytes_written,
            dram_bytes=layer.dram_bytes,
            compute_cycles=layer.compute_cycles,
            memory_cycles=layer.memory_cycles,
            cycles=layer.cycles,
            bound=_BOUNDS.get(layer.bound, pb.BOUND_UNSPECIFIED),
            latency_ms=layer.latency_ms,
            energy_mj=layer.energy_mj,
            unsupported=layer.unsupported,
        )
    return resp


def profile_to_proto(p: HardwareProfile) -> pb.HardwareProfile:
    return pb.HardwareProfile(
        name=p.name,
        description=p.description,
        default_backend=p.default_backend,
        backends=list(p.backends),
        parameters=p.params,
        sources=p.sources,
        path=p.path,
    )


class EstimatorServicer(pb_grpc.EstimatorServicer):
    def __init__(self, engine: EstimatorEngine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self.stats: Counter[str] = Counter()  # "estimate", "error:<CODE>", "list_hardware"
        self.in_flight = 0  # Estimate calls being served now (what a graceful stop drains)

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1

    def Estimate(
        self, request: pb.EstimateRequest, context: grpc.ServicerContext
    ) -> pb.EstimateResponse:
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining
        arch = None
        if request.WhichOneof("model") == "arch":
            arch = (
                request.arch.space,
                request.arch.arch_yaml,
                request.arch.num_classes,
                request.arch.activation,
            )
        with self._lock:
            self.in_flight += 1
        try:
            est = self.engine.estimate(
                request.onnx if arch is None else None,
                arch=arch,
                profile=request.profile,
                hw_config=dict(request.hw_config),
                backend=request.backend,
                input_shapes={s.name: list(s.dims) for s in request.input_shapes},
                metrics=[_METRICS[m] for m in request.metrics if m in _METRICS],
                with_layers=not request.omit_layers,
                deadline=deadline,
            )
        except EstimatorError as exc:
            self._count(f"error:{exc.code}")
            context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
        except Gen5NasError as exc:
            self._count("error:INVALID_ARGUMENT")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Exception as exc:  # a bug, not the user's fault: say so, keep serving
            log.exception("estimate failed")
            self._count("error:INTERNAL")
            context.abort(grpc.StatusCode.INTERNAL, f"estimator bug: {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self.in_flight -= 1
        self._count("estimate")
        return estimate_to_proto(est)

    def ListHardware(
        self, request: pb.ListHardwareRequest, context: grpc.ServicerContext
    ) -> pb.ListHardwareResponse:
        self._count("list_hardware")
        return pb.ListHardwareResponse(
            profiles=[profile_to_proto(p) for p in self.engine.registry.all()],
            default_profile=DEFAULT_PROFILE,
            estimator_version=ESTIMATOR_VERSION,
        )

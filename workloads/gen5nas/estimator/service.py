"""The gRPC servicer: translates ``EstimateRequest`` <-> :class:`EstimatorEngine` calls and maps
user errors to status codes (INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED...), so a bad
request is answered with an actionable message and the server keeps serving.

Requests arrive as bytes (``server.py`` registers no deserializer) and are parsed here, so that
a malformed one is INVALID_ARGUMENT naming the field, not gRPC's own INTERNAL "Exception
deserializing request". Every request gets a deadline (the client's, capped by the server's
``max_request_s``) and stops when its client goes away."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from gen5nas.errors import Gen5NasError
from gen5nas.estimator._proto import estimator_pb2 as pb
from gen5nas.estimator._proto import estimator_pb2_grpc as pb_grpc
from gen5nas.estimator.engine import ESTIMATOR_VERSION, EstimatorEngine
from gen5nas.estimator.errors import EstimatorError, InvalidRequest
from gen5nas.estimator.profiles import DEFAULT_PROFILE, HardwareProfile
from gen5nas.estimator.result import Estimate

log = logging.getLogger(__name__)

_METRICS = {pb.METRIC_LATENCY: "latency", pb.METRIC_ENERGY: "energy"}
_BOUNDS = {"compute": pb.BOUND_COMPUTE, "memory": pb.BOUND_MEMORY, "none": pb.BOUND_NONE}
DEFAULT_MAX_REQUEST_S = 600.0  # a request without a deadline stops here
MAX_DETAILS = 2000  # characters of an error message (gRPC carries it in a header)
MAX_INPUT_SHAPES = 64


def parse_request(cls: type[Message], data: bytes | Message) -> Any:
    """``data`` parsed as ``cls``; a malformed message is InvalidRequest naming the field."""
    if isinstance(data, Message):
        return data
    msg = cls()
    try:
        msg.ParseFromString(data)
    except DecodeError as exc:
        reason = str(exc).rsplit(": ", 1)[-1]
        where = _bad_field(cls.DESCRIPTOR, data)
        raise InvalidRequest(
            f"malformed {cls.DESCRIPTOR.full_name}: {where or 'the message'}: {reason}"
        ) from None
    return msg


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[pos]  # IndexError: truncated
        value |= (b & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not b & 0x80:
            return value, pos
        if shift > 63:
            raise IndexError("varint too long")


def _bad_field(desc: Any, data: bytes, prefix: str = "") -> str:
    """The (dotted) name of the first field of ``data`` that does not parse as ``desc``."""
    cls = message_factory.GetMessageClass(desc)
    pos = 0
    while pos < len(data):
        start = pos
        try:
            tag, pos = _varint(data, pos)
            wire, payload = tag & 7, b""
            if wire == 0:
                _, pos = _varint(data, pos)
            elif wire == 2:
                size, pos = _varint(data, pos)
                payload = data[pos : pos + size]
                pos += size
            elif wire in (1, 5):
                pos += 8 if wire == 1 else 4
            if pos > len(data) or wire not in (0, 1, 2, 5):
                raise IndexError
        except IndexError:
            return f"{prefix or ''}bytes from offset {start} (truncated or not protobuf)"
        field = desc.fields_by_number.get(tag >> 3)
        name = prefix + (field.name if field is not None else f"field #{tag >> 3}")
        try:
            cls().MergeFromString(data[start:pos])
        except DecodeError:
            if field is not None and field.type == FieldDescriptor.TYPE_MESSAGE and wire == 2:
                return _bad_field(field.message_type, payload, f"{name}.") or name
            return name
    return ""


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
    def __init__(
        self, engine: EstimatorEngine, max_request_s: float = DEFAULT_MAX_REQUEST_S
    ) -> None:
        self.engine = engine
        self.max_request_s = max_request_s
        self._lock = threading.Lock()
        self.stats: Counter[str] = Counter()  # "estimate", "error:<CODE>", "list_hardware"
        self.in_flight = 0  # Estimate calls being served now (what a graceful stop drains)

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1

    def Estimate(
        self, request: bytes | pb.EstimateRequest, context: grpc.ServicerContext
    ) -> pb.EstimateResponse:
        remaining = context.time_remaining()
        cap = self.max_request_s if remaining is None else min(remaining, self.max_request_s)
        deadline = time.monotonic() + cap
        with self._lock:
            self.in_flight += 1
        try:
            req = parse_request(pb.EstimateRequest, request)
            arch = None
            if req.WhichOneof("model") == "arch":
                a = req.arch
                arch = (a.space, a.arch_yaml, a.num_classes, a.activation, a.scope, a.task)
            resp = estimate_to_proto(
                self.engine.estimate(
                    req.onnx if arch is None else None,
                    arch=arch,
                    profile=req.profile,
                    hw_config=dict(req.hw_config),
                    backend=req.backend,
                    input_shapes=_input_shapes(req),
                    metrics=_metrics(req),
                    with_layers=not req.omit_layers,
                    deadline=deadline,
                    client_gone=lambda: not context.is_active(),
                )
            )
        except EstimatorError as exc:
            self._abort(context, exc.code, str(exc))
        except Gen5NasError as exc:
            self._abort(context, "INVALID_ARGUMENT", str(exc))
        except Exception as exc:  # a bug, not the user's fault: say so, keep serving
            log.exception("estimate failed")
            self._abort(context, "INTERNAL", f"estimator bug: {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self.in_flight -= 1
        self._count("estimate")
        return resp

    def _abort(self, context: grpc.ServicerContext, code: str, details: str) -> None:
        self._count(f"error:{code}")
        if len(details) > MAX_DETAILS:
            details = details[: MAX_DETAILS - 20] + " ... (message cut)"
        context.abort(getattr(grpc.StatusCode, code), details)

    def ListHardware(
        self, request: bytes | pb.ListHardwareRequest, context: grpc.ServicerContext
    ) -> pb.ListHardwareResponse:
        try:
            parse_request(pb.ListHardwareRequest, request)
        except EstimatorError as exc:
            self._abort(context, exc.code, str(exc))
        self._count("list_hardware")
        return pb.ListHardwareResponse(
            profiles=[profile_to_proto(p) for p in self.engine.registry.all()],
            default_profile=DEFAULT_PROFILE,
            estimator_version=ESTIMATOR_VERSION,
        )


def _metrics(req: pb.EstimateRequest) -> list[str]:
    allowed = ", ".join(f"{pb.Metric.Name(m)} ({m})" for m in _METRICS)
    for i, m in enumerate(req.metrics):
        if m not in _METRICS:
            raise InvalidRequest(
                f"metrics[{i}] = {m} is not a metric to ask for; allowed: {allowed}"
            )
    return [_METRICS[m] for m in req.metrics]


def _input_shapes(req: pb.EstimateRequest) -> dict[str, list[int]]:
    if len(req.input_shapes) > MAX_INPUT_SHAPES:
        raise InvalidRequest(
            f"input_shapes has {len(req.input_shapes)} entries, over the limit of "
            f"{MAX_INPUT_SHAPES}"
        )
    shapes: dict[str, list[int]] = {}
    for i, s in enumerate(req.input_shapes):
        if s.name in shapes:
            raise InvalidRequest(f"input_shapes[{i}] names input {s.name[:80]!r} a second time")
        if len(s.dims) > 32:
            raise InvalidRequest(
                f"input_shapes[{i}] ({s.name[:80]!r}) has {len(s.dims)} dims, over 32"
            )
        shapes[s.name] = list(s.dims)
    return shapes

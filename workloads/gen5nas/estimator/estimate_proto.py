"""An ``EstimateResponse`` read back into the :class:`~gen5nas.estimator.result.Estimate` the
search step works with."""

from __future__ import annotations

from gen5nas.estimator._proto import estimator_pb2 as pb
from gen5nas.estimator.result import Estimate, LayerEstimate

_BOUNDS = {pb.BOUND_COMPUTE: "compute", pb.BOUND_MEMORY: "memory", pb.BOUND_NONE: "none"}


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

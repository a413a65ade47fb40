"""The analytical accelerator model: a roofline per layer with on-chip SRAM.

Per node: compute cycles = (MACs + outputs x output_overhead_macs) / (mac_units x
efficiency[kind]) + vector ops / (vector_ops_per_cycle x efficiency[kind]); memory cycles = the larger of DRAM bytes / DRAM bytes
per cycle and on-chip bytes / SRAM bytes per cycle (the two paths overlap, double-buffered).
A tensor that fits in SRAM stays on chip; a larger one, a weight, or a graph input/output pays
DRAM traffic. cycles = max(compute, memory); latency = cycles / clock + per-layer overhead (views
such as Reshape are free). A node the profile's ``fusion`` rules fold into its producer (Conv+Relu,
Conv+Add) takes no cycles, bytes or overhead; its vector ops still cost energy. energy = MACs x e_mac + vector ops x e_vector + on-chip bytes x
e_sram + DRAM bytes x e_dram + static power x latency.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gen5nas.estimator.graph_work import GraphWork
from gen5nas.estimator.op_kinds import KINDS
from gen5nas.estimator.profiles import EFFICIENCY_KINDS, HardwareProfile, efficiency_of
from gen5nas.estimator.result import Estimate, LayerEstimate

VERSION = "gen5nas-analytical/1"


@dataclass
class LayerArrays:
    """Per-node costs as arrays (one entry per node), so calibration can re-cost quickly."""

    bytes_read: np.ndarray
    bytes_written: np.ndarray
    dram_bytes: np.ndarray
    compute_cycles: np.ndarray
    memory_cycles: np.ndarray
    cycles: np.ndarray
    latency_s: np.ndarray
    energy_j: np.ndarray


def efficiency_by_kind(params: dict[str, float]) -> np.ndarray:
    return np.array([efficiency_of(params, k) if k in EFFICIENCY_KINDS else 1.0 for k in KINDS])


def cost_arrays(
    work: GraphWork, params: dict[str, float], fusion: Sequence[str] = ()
) -> LayerArrays:
    p = params
    n = len(work.nodes)
    clock_hz = p["clock_ghz"] * 1e9
    fused = work.fused_mask(fusion)
    use_bytes = work.use_numel * p["bytes_per_element"] * ~fused[work.use_node]
    in_dram = work.use_offchip | (use_bytes > p["sram_kib"] * 1024)
    read = np.bincount(work.use_node, weights=use_bytes * ~work.use_write, minlength=n)
    written = np.bincount(work.use_node, weights=use_bytes * work.use_write, minlength=n)
    dram = np.bincount(work.use_node, weights=use_bytes * in_dram, minlength=n)
    onchip = read + written - dram
    eff = efficiency_by_kind(p)[work.kind_index]
    compute = (
        (work.macs + work.outputs * p.get("output_overhead_macs", 0.0)) / (p["mac_units"] * eff)
        + work.vector_ops / (p["vector_ops_per_cycle"] * eff)
    ) * ~fused
    dram_bytes_per_cycle = p["dram_bandwidth_gbs"] * 1e9 * p["dram_efficiency"] / clock_hz
    memory = np.maximum(dram / dram_bytes_per_cycle, onchip / p["sram_bytes_per_cycle"])
    cycles = np.maximum(compute, memory)
    is_view = work.kind_index == KINDS.index("view")
    latency = cycles / clock_hz + p["layer_overhead_us"] * 1e-6 * ~(is_view | fused)
    energy = (
        work.macs * p["e_mac_pj"]
        + work.vector_ops * p["e_vector_op_pj"]
        + onchip * p["e_sram_pj_per_byte"]
        + dram * p["e_dram_pj_per_byte"]
    ) * 1e-12 + p["static_power_w"] * latency
    return LayerArrays(read, written, dram, compute, memory, cycles, latency, energy)


def total_latency_ms(
    work: GraphWork, params: dict[str, float], fusion: Sequence[str] = ()
) -> float:
    return float(cost_arrays(work, params, fusion).latency_s.sum() * 1e3)


def estimate(
    work: GraphWork,
    profile: HardwareProfile,
    with_layers: bool = True,
    want_latency: bool = True,
    want_energy: bool = True,
) -> Estimate:
    a = cost_arrays(work, profile.params, profile.fusion)
    layers: list[LayerEstimate] = []
    if with_layers:
        for i, node in enumerate(work.nodes):
            c, m = float(a.compute_cycles[i]), float(a.memory_cycles[i])
            bound = "none" if c == 0 and m == 0 else ("compute" if c > m else "memory")
            layers.append(
                LayerEstimate(
                    name=node.name,
                    op_type=node.op_type,
                    op_kind=node.kind,
                    macs=node.macs,
                    vector_ops=node.vector_ops,
                    bytes_read=int(a.bytes_read[i]),
                    bytes_written=int(a.bytes_written[i]),
                    dram_bytes=int(a.dram_bytes[i]),
                    compute_cycles=c,
                    memory_cycles=m,
                    cycles=float(a.cycles[i]),
                    bound=bound,
                    latency_ms=float(a.latency_s[i] * 1e3),
                    energy_mj=float(a.energy_j[i] * 1e3),
                    unsupported=not node.supported,
                )
            )
    unsupported = work.unsupported_ops()
    notes = list(work.notes)
    if unsupported:
        notes.append(f"ops unknown to the analytical model, costed by bytes moved: {unsupported}")
    return Estimate(
        latency_ms=float(a.latency_s.sum() * 1e3) if want_latency else None,
        energy_mj=float(a.energy_j.sum() * 1e3) if want_energy else None,
        backend="analytical",
        profile=profile.name,
        layers=layers,
        estimator_version=VERSION,
        total_macs=work.total_macs,
        total_bytes=int(a.bytes_read.sum() + a.bytes_written.sum()),
        unsupported_ops=unsupported,
        model_sha256=work.sha256,
        hw_config=dict(profile.params),
        notes=notes,
    )

"""The answer of every backend, in-process and over gRPC alike (plain dataclasses, no grpc)."""

from __future__ import annotations

from dataclasses import dataclass, field

SCOPE_NOTE = "cost scope: "
"""An arch request's answer notes ``cost scope: <scope>``: a client asking for a scope checks
it was served (a server that predates scopes would cost the whole network)."""


@dataclass(frozen=True)
class LayerEstimate:
    name: str
    op_type: str
    op_kind: str
    macs: int = 0
    vector_ops: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    dram_bytes: int = 0
    compute_cycles: float = 0.0
    memory_cycles: float = 0.0
    cycles: float = 0.0
    bound: str = "none"  # "compute" | "memory" | "none"
    latency_ms: float = 0.0
    energy_mj: float = 0.0
    unsupported: bool = False


@dataclass(frozen=True)
class Estimate:
    """Latency and energy of one model on one hardware profile. A metric not asked for is None."""

    latency_ms: float | None
    energy_mj: float | None
    backend: str
    profile: str
    layers: list[LayerEstimate] = field(default_factory=list)
    estimator_version: str = ""
    total_macs: int = 0
    total_bytes: int = 0
    unsupported_ops: list[str] = field(default_factory=list)
    model_sha256: str = ""
    hw_config: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    endpoint: str = ""  # which server answered ("" in-process); set by the client

    def costed_scope(self) -> str | None:
        """The cost scope the notes name (an arch request's), else None."""
        return next(
            (n.removeprefix(SCOPE_NOTE) for n in self.notes if n.startswith(SCOPE_NOTE)), None
        )

    def cost(self, key: str) -> float:
        """The search step's objective: ``latency`` (ms) or ``energy`` (mJ)."""
        value = {"latency": self.latency_ms, "energy": self.energy_mj}.get(key)
        if value is None:
            raise KeyError(f"cost_key {key!r}: this estimate has no such metric (latency, energy)")
        return value

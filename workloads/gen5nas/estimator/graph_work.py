"""The hardware-independent work of a model: per node MACs, vector ops and tensors touched,
with flat arrays the analytical model costs in one vectorised pass."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gen5nas.estimator.op_kinds import KINDS, OTHER_KIND
from gen5nas.estimator.profiles import FUSION_RULES


@dataclass(frozen=True)
class TensorUse:
    """One tensor a node reads or writes; ``offchip`` when it must live in DRAM whatever its
    size (weights are stored there, graph inputs/outputs come from and go to memory)."""

    name: str
    numel: int
    offchip: bool
    write: bool


@dataclass
class NodeWork:
    name: str
    op_type: str
    kind: str
    macs: int = 0
    vector_ops: int = 0
    tensors: list[TensorUse] = field(default_factory=list)
    fusion: str = ""  # the FUSION_RULES entry that lets it fold into its producer, if any
    outputs: int = 0  # output elements of a conv/gemm (each one a reduction of macs/outputs)

    @property
    def supported(self) -> bool:
        return self.kind != OTHER_KIND

    def elems_read(self) -> int:
        return sum(t.numel for t in self.tensors if not t.write)

    def elems_written(self) -> int:
        return sum(t.numel for t in self.tensors if t.write)


@dataclass
class GraphWork:
    """The hardware-independent work of a model, plus flat arrays for fast costing."""

    sha256: str
    nodes: list[NodeWork]
    input_shapes: dict[str, list[int]]
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.kind_index = np.array([KINDS.index(n.kind) for n in self.nodes], dtype=np.int64)
        self.macs = np.array([n.macs for n in self.nodes], dtype=np.float64)
        self.vector_ops = np.array([n.vector_ops for n in self.nodes], dtype=np.float64)
        self.outputs = np.array([n.outputs for n in self.nodes], dtype=np.float64)
        self.fusion_index = np.array(  # 1 + FUSION_RULES index; 0 = not fusable
            [FUSION_RULES.index(n.fusion) + 1 if n.fusion else 0 for n in self.nodes],
            dtype=np.int64,
        )
        uses = [(i, t) for i, n in enumerate(self.nodes) for t in n.tensors]
        self.use_node = np.array([i for i, _ in uses], dtype=np.int64)
        self.use_numel = np.array([t.numel for _, t in uses], dtype=np.float64)
        self.use_offchip = np.array([t.offchip for _, t in uses], dtype=bool)
        self.use_write = np.array([t.write for _, t in uses], dtype=bool)

    @property
    def total_macs(self) -> int:
        return int(self.macs.sum())

    def unsupported_ops(self) -> list[str]:
        if not hasattr(self, "_unsupported"):
            self._unsupported = sorted({n.op_type for n in self.nodes if not n.supported})
        return list(self._unsupported)

    def fused_mask(self, rules: Sequence[str]) -> np.ndarray:
        """The nodes folded into their producer under a profile's fusion ``rules``."""
        codes = [FUSION_RULES.index(r) + 1 for r in rules if r in FUSION_RULES]
        return np.isin(self.fusion_index, codes)


def model_sha256(onnx_bytes: bytes) -> str:
    return hashlib.sha256(onnx_bytes).hexdigest()

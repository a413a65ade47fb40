"""The measured backend: onnxruntime on this server's CPU (warm-up, repeated runs, median).

One measurement at a time per process: two concurrent timings on the same cores would slow
each other down and both be wrong. The per-layer breakdown, when asked for, comes from one extra
profiled run (onnxruntime's profiler), so the timed runs carry no profiling overhead.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from gen5nas.estimator.errors import DeadlineExceeded, InvalidRequest

VERSION = "gen5nas-onnxruntime/1"

_NUMPY_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}  # fmt: skip


@dataclass
class Measurement:
    latency_ms: float  # median of the timed runs
    runs_ms: list[float]
    layers: list[tuple[str, str, float]] = field(default_factory=list)  # (node, op, ms)
    ort_version: str = ""


class OrtMeasurer:
    def __init__(self) -> None:
        self._lock = threading.Lock()

    def measure(
        self,
        onnx_bytes: bytes,
        input_shapes: Mapping[str, Sequence[int]],
        warmup: int = 3,
        repeats: int = 10,
        threads: int = 0,
        deadline: float | None = None,
        with_layers: bool = False,
    ) -> Measurement:
        """Median latency over ``repeats`` runs after ``warmup``; ``deadline`` is a
        ``time.monotonic()`` instant after which it stops and raises DeadlineExceeded."""
        import onnxruntime as ort

        with self._lock:
            options = self._options(ort, threads)
            try:
                session = ort.InferenceSession(
                    onnx_bytes, options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
                raise InvalidRequest(f"onnxruntime cannot load the model: {exc}") from None
            feeds = self._feeds(session, input_shapes)
            runs: list[float] = []
            for i in range(max(warmup, 0) + max(repeats, 1)):
                if deadline is not None and time.monotonic() > deadline:
                    raise DeadlineExceeded(
                        f"deadline passed after {len(runs)} timed runs of {repeats}; give the "
                        f"request a longer deadline or lower measured.repeats in the profile"
                    )
                t0 = time.perf_counter()
                session.run(None, feeds)
                if i >= warmup:
                    runs.append((time.perf_counter() - t0) * 1e3)
            layers = self._profile_layers(ort, onnx_bytes, threads, feeds) if with_layers else []
        return Measurement(statistics.median(runs), runs, layers, ort.__version__)

    @staticmethod
    def _options(ort, threads: int):  # type: ignore[no-untyped-def]
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads > 0:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        return options

    @staticmethod
    def _feeds(session, input_shapes: Mapping[str, Sequence[int]]) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
        rng = np.random.default_rng(0)
        feeds: dict[str, np.ndarray] = {}
        for inp in session.get_inputs():
            shape = input_shapes.get(inp.name) or inp.shape
            if any(not isinstance(d, int) or d <= 0 for d in shape):
                raise InvalidRequest(
                    f"model input {inp.name!r} has a symbolic shape {inp.shape}; give input_shapes"
                )
            dtype = _NUMPY_TYPES.get(inp.type, np.float32)
            if np.issubdtype(dtype, np.floating):
                feeds[inp.name] = rng.standard_normal(shape).astype(dtype)
            else:
                feeds[inp.name] = np.zeros(shape, dtype=dtype)
        return feeds

    def _profile_layers(
        self, ort, onnx_bytes: bytes, threads: int, feeds
    ) -> list[tuple[str, str, float]]:  # type: ignore[no-untyped-def]
        with tempfile.TemporaryDirectory(prefix="gen5nas-ort-prof-") as tmp:
            options = self._options(ort, threads)
            options.enable_profiling = True
            options.profile_file_prefix = os.path.join(tmp, "ort")
            session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
            session.run(None, feeds)  # warm-up inside the profile; the last run is kept below
            session.run(None, feeds)
            path = session.end_profiling()
            with open(path) as f:
                events = json.load(f)
        per_node: dict[str, tuple[str, float]] = {}
        for ev in events:
            if ev.get("cat") != "Node" or not str(ev.get("name", "")).endswith("_kernel_time"):
                continue
            node = ev["name"][: -len("_kernel_time")]
            op = ev.get("args", {}).get("op_name", "")
            per_node[node] = (op, ev.get("dur", 0) / 1e3)  # later (second) run overwrites
        return [(node, op, ms) for node, (op, ms) in per_node.items()]

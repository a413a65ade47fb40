"""The estimator without gRPC: model (or arch) + profile + overrides -> :class:`Estimate`.

The gRPC servicer is a thin translation of this class; the benchmark calls it in-process to
measure what gRPC adds. Graph analyses and arch->ONNX builds are cached (LRU) because a search
asks about the same model under several profiles and the same arch from several workers.

An arch request needs no torch: ``arch_graph`` writes the graph the torch exporter would (a few
ms instead of ~0.3-2.5 s of tracing), weightless for the analytical backend and zero-weight for
the measured one (onnxruntime's fp32 kernels take the same time whatever the values).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import yaml

from gen5nas import __version__
from gen5nas.errors import Gen5NasError
from gen5nas.estimator import analytical, arch_graph
from gen5nas.estimator.errors import DeadlineExceeded, InvalidRequest, NotFound
from gen5nas.estimator.onnx_graph import GraphWork, analyze, analyze_model, model_sha256
from gen5nas.estimator.profiles import ProfileRegistry
from gen5nas.estimator.result import Estimate, LayerEstimate
from gen5nas.lru import LRU

ESTIMATOR_VERSION = f"gen5nas-estimator/{__version__}"
DEFAULT_MAX_MODEL_BYTES = 256 * 2**20


class EstimatorEngine:
    def __init__(
        self,
        registry: ProfileRegistry | None = None,
        profiles_dirs: Iterable[str] = (),
        max_model_bytes: int = DEFAULT_MAX_MODEL_BYTES,
        cache_size: int = 512,
    ) -> None:
        self.registry = registry or ProfileRegistry(profiles_dirs)
        self.max_model_bytes = max_model_bytes
        self._graphs: LRU[Hashable, GraphWork] = LRU(cache_size)  # small (per-node counts)
        self._arch_graphs: LRU[Hashable, GraphWork] = LRU(cache_size * 8)
        self._arch_bytes: LRU[Hashable, bytes] = LRU(16)  # whole ONNX files with weights: a few
        self._measurer: Any = None
        self._measurer_lock = threading.Lock()

    def caches(self) -> dict[str, LRU[Hashable, Any]]:
        """The engine's caches by name (their hit counts and sizes are the server's metrics)."""
        return {
            "graph": self._graphs,
            "arch_graph": self._arch_graphs,
            "arch_onnx": self._arch_bytes,
        }

    # ---- inputs ---------------------------------------------------------------------------
    def analyze(
        self, onnx_bytes: bytes, input_shapes: Mapping[str, Sequence[int]] | None = None
    ) -> GraphWork:
        shapes = {k: tuple(v) for k, v in (input_shapes or {}).items()}
        if len(onnx_bytes) > self.max_model_bytes or not onnx_bytes:
            return analyze(onnx_bytes, shapes, self.max_model_bytes)  # raises the right error
        key = (model_sha256(onnx_bytes), tuple(sorted(shapes.items())))
        return self._graphs.get_or_compute(
            key, lambda: analyze(onnx_bytes, shapes, self.max_model_bytes)
        )

    def _resolve_arch(
        self, space_name: str, arch_yaml: str, num_classes: int = 0, activation: str = ""
    ) -> tuple:
        """Validate an arch request; returns (cache key, space, arch, classes, activation)."""
        from gen5nas.spec import Arch, load_space, named_spaces
        from gen5nas.spec.space import parse_model

        if not space_name:
            raise InvalidRequest(f"arch.space is empty; known spaces: {named_spaces()}")
        if space_name not in named_spaces():  # never a path: a request must not read files
            raise NotFound(f"unknown search space {space_name!r}; known: {named_spaces()}")
        try:
            data = yaml.safe_load(arch_yaml or "")
        except yaml.YAMLError as exc:
            raise InvalidRequest(f"arch.arch_yaml is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidRequest(
                "arch.arch_yaml must be an arch document (fix_subnets/trial_N.yaml)"
            )
        try:
            space = load_space(space_name)
            arch = space.check(parse_model(Arch, data, source="arch.arch_yaml"))
        except Gen5NasError as exc:
            raise InvalidRequest(str(exc)) from None
        classes = num_classes or 1000
        activation = activation or "relu6"
        if activation not in arch_graph.ACTIVATIONS:
            raise InvalidRequest(
                f"arch.activation {activation!r} is not one of {list(arch_graph.ACTIVATIONS)}"
            )
        return (space_name, arch.key(), classes, activation), space, arch, classes, activation

    def arch_onnx(
        self, space_name: str, arch_yaml: str, num_classes: int = 0, activation: str = ""
    ) -> bytes:
        """The zero-weight ONNX of an arch's static subnet (what the measured backend runs)."""
        key, space, arch, classes, act = self._resolve_arch(
            space_name, arch_yaml, num_classes, activation
        )
        return self._arch_bytes.get_or_compute(
            key, lambda: arch_graph.arch_onnx(space, arch, num_classes=classes, activation=act)
        )

    def arch_work(
        self, space_name: str, arch_yaml: str, num_classes: int = 0, activation: str = ""
    ) -> GraphWork:
        """The graph analysis of an arch, cached by the arch itself. Built without weight data:
        the analysis reads shapes only. ``sha256`` is the hash of that weightless graph."""
        key, space, arch, classes, act = self._resolve_arch(
            space_name, arch_yaml, num_classes, activation
        )

        def build() -> GraphWork:
            model = arch_graph.arch_model(
                space, arch, num_classes=classes, activation=act, weights="none"
            )
            return analyze_model(model, model_sha256(model.SerializeToString()))

        return self._arch_graphs.get_or_compute(key, build)

    # ---- the estimate ---------------------------------------------------------------------
    def estimate(
        self,
        onnx_bytes: bytes | None = None,
        *,
        arch: tuple[str, str, int] | tuple[str, str, int, str] | None = None,
        profile: str = "",
        hw_config: Mapping[str, float] | None = None,
        backend: str = "",
        input_shapes: Mapping[str, Sequence[int]] | None = None,
        metrics: Sequence[str] = (),
        with_layers: bool = True,
        deadline: float | None = None,
    ) -> Estimate:
        """``metrics`` is a subset of ("latency", "energy"); empty = both. ``deadline`` is a
        ``time.monotonic()`` instant (the measured backend stops at it)."""
        hw = self.registry.get(profile).with_overrides(hw_config)
        backend = backend or hw.default_backend
        if backend not in hw.backends:
            raise InvalidRequest(
                f"backend {backend!r} is not available for profile {hw.name!r}; it has "
                f"{list(hw.backends)}"
            )
        bad = [m for m in metrics if m not in ("latency", "energy")]
        if bad:
            raise InvalidRequest(f"unknown metrics {bad}; allowed: latency, energy")
        want_latency = not metrics or "latency" in metrics
        want_energy = not metrics or "energy" in metrics
        if arch is not None:
            work = self.arch_work(*arch)
        elif not onnx_bytes:
            raise InvalidRequest(
                "empty request: set `onnx` (the bytes of a .onnx file) or `arch` "
                "(space name + arch YAML)"
            )
        else:
            work = self.analyze(onnx_bytes, input_shapes)
        if deadline is not None and time.monotonic() > deadline:
            raise DeadlineExceeded("the request's deadline passed while its model was analysed")
        result = analytical.estimate(work, hw, with_layers and backend == "analytical")
        if backend == "analytical":
            return _replace(
                result,
                latency_ms=result.latency_ms if want_latency else None,
                energy_mj=result.energy_mj if want_energy else None,
                estimator_version=ESTIMATOR_VERSION,
            )
        if arch is not None:
            onnx_bytes = self.arch_onnx(*arch)
        assert onnx_bytes is not None
        return self._measured(
            onnx_bytes, work, hw, result, with_layers, want_latency, want_energy, deadline
        )

    def _measured(
        self, onnx_bytes, work, hw, modelled, with_layers, want_latency, want_energy, deadline
    ):  # type: ignore[no-untyped-def]
        from gen5nas.estimator.measured import OrtMeasurer

        with self._measurer_lock:
            if self._measurer is None:
                self._measurer = OrtMeasurer()
        m = self._measurer.measure(
            onnx_bytes,
            work.input_shapes,
            warmup=hw.measured["warmup"],
            repeats=hw.measured["repeats"],
            threads=hw.measured["threads"],
            deadline=deadline,
            with_layers=with_layers,
        )
        # Energy: the analytical dynamic energy (MACs, bytes) + static power x measured latency.
        static_model = hw.params["static_power_w"] * (modelled.latency_ms or 0.0)
        dynamic_mj = (modelled.energy_mj or 0.0) - static_model
        energy = dynamic_mj + hw.params["static_power_w"] * m.latency_ms
        layers = [
            LayerEstimate(name=n, op_type=op, op_kind="measured", latency_ms=ms)
            for n, op, ms in m.layers
        ]
        notes = [
            *modelled.notes,
            f"onnxruntime {m.ort_version}: median of {len(m.runs_ms)} runs "
            f"(min {min(m.runs_ms):.3f} ms, max {max(m.runs_ms):.3f} ms)",
            "energy = analytical dynamic energy + static_power_w x measured latency",
        ]
        return _replace(
            modelled,
            latency_ms=m.latency_ms if want_latency else None,
            energy_mj=energy if want_energy else None,
            backend="onnxruntime",
            layers=layers,
            notes=notes,
            estimator_version=ESTIMATOR_VERSION,
        )


def _replace(est: Estimate, **changes: Any) -> Estimate:
    import dataclasses

    return dataclasses.replace(est, **changes)


def monotonic_deadline(seconds_left: float | None) -> float | None:
    return None if seconds_left is None else time.monotonic() + seconds_left

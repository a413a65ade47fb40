"""The estimator without gRPC: model (or arch) + profile + overrides -> :class:`Estimate`.

The gRPC servicer is a thin translation of this class; the benchmark calls it in-process to
measure what gRPC adds. Graph analyses and arch->ONNX builds are cached (LRU) because a search
asks about the same model under several profiles and the same arch from several workers.

An arch request needs no torch: ``arch_graph`` writes the graph the torch exporter would (a few
ms instead of ~0.3-2.5 s of tracing), weightless for the analytical backend and zero-weight for
the measured one (onnxruntime's fp32 kernels take the same time whatever the values).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

import yaml

from gen5nas import __version__
from gen5nas.errors import Gen5NasError
from gen5nas.estimator import analytical, arch_graph
from gen5nas.estimator.errors import (
    InvalidRequest,
    NotFound,
    TooLarge,
    check_deadline,
    request_scope,
)
from gen5nas.estimator.graph_work import GraphWork, model_sha256
from gen5nas.estimator.onnx_graph import analyze, analyze_model
from gen5nas.estimator.profiles import ProfileRegistry
from gen5nas.estimator.result import SCOPE_NOTE, Estimate, LayerEstimate
from gen5nas.lru import LRU

ESTIMATOR_VERSION = f"gen5nas-estimator/{__version__}"
DEFAULT_MAX_MODEL_BYTES = 256 * 2**20
MAX_ARCH_YAML_BYTES = 64 * 1024  # an arch document is a few hundred bytes
MAX_YAML_DEPTH = 16
MAX_CLASSES = 100_000  # the classifier's weight grows with it (x 1280 channels x 4 bytes)


class EstimatorEngine:
    def __init__(
        self,
        registry: ProfileRegistry | None = None,
        profiles_dirs: Iterable[str] = (),
        max_model_bytes: int = DEFAULT_MAX_MODEL_BYTES,
        cache_size: int = 512,
        measure_memory_mb: int | None = None,
        max_run_s: float | None = None,
    ) -> None:
        """``measure_memory_mb`` bounds the onnxruntime worker's memory, ``max_run_s`` a
        measurement of a request without a deadline (defaults: ``measured``'s)."""
        self.registry = registry or ProfileRegistry(profiles_dirs)
        self.max_model_bytes = max_model_bytes
        self._graphs: LRU[Hashable, GraphWork] = LRU(cache_size)  # small (per-node counts)
        self._arch_graphs: LRU[Hashable, GraphWork] = LRU(cache_size * 8)
        self._arch_bytes: LRU[Hashable, bytes] = LRU(16)  # whole ONNX files with weights: a few
        self._measurer: Any = None
        self._measurer_lock = threading.Lock()
        self._measure_options: dict[str, Any] = {
            k: v
            for k, v in (("memory_mb", measure_memory_mb), ("max_run_s", max_run_s))
            if v is not None
        }
        self._health_listeners: list[Callable[[str, bool], None]] = []

    def on_backend_health(self, listener: Callable[[str, bool], None]) -> None:
        """``listener(backend, serving)`` hears when a backend stops or starts being able to
        serve (the onnxruntime worker died, restarted, cannot start)."""
        self._health_listeners.append(listener)

    def _backend_health(self, backend: str, serving: bool) -> None:
        for listener in self._health_listeners:
            listener(backend, serving)

    def close(self) -> None:
        """Stop the measured backend's worker process (a measurement in progress ends)."""
        with self._measurer_lock:
            measurer, self._measurer = self._measurer, None
        if measurer is not None:
            measurer.close()

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
        self,
        space_name: str,
        arch_yaml: str,
        num_classes: int = 0,
        activation: str = "",
        scope: str = "",
        task: str = "",
    ) -> tuple:
        """Validate an arch request; returns (cache key, space, arch, classes, activation,
        scope, task)."""
        from gen5nas.spec import Arch, load_space, named_spaces
        from gen5nas.spec.space import parse_model

        if not space_name:
            raise InvalidRequest(f"arch.space is empty; known spaces: {named_spaces()}")
        if space_name not in named_spaces():  # never a path: a request must not read files
            raise NotFound(f"unknown search space {space_name[:80]!r}; known: {named_spaces()}")
        if not 0 <= num_classes <= MAX_CLASSES:
            raise InvalidRequest(
                f"arch.num_classes = {num_classes}: must be in 1..{MAX_CLASSES} (0 = 1000)"
            )
        if activation and activation not in arch_graph.ACTIVATIONS:
            raise InvalidRequest(
                f"arch.activation {activation[:80]!r} is not one of {list(arch_graph.ACTIVATIONS)}"
            )
        if scope and scope not in arch_graph.GRAPH_SCOPES:
            raise InvalidRequest(
                f"arch.scope {scope[:80]!r} is not one of {list(arch_graph.GRAPH_SCOPES)}"
            )
        task = _check_task(task, scope)
        data = _parse_arch_yaml(arch_yaml)
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
        scope = scope or "network"
        # Only the detector graph depends on the task: the others are shared by every task.
        key = (space_name, arch.key(), classes, activation, scope, task * (scope == "detector"))
        return key, space, arch, classes, activation, scope, task

    def arch_onnx(
        self,
        space_name: str,
        arch_yaml: str,
        num_classes: int = 0,
        activation: str = "",
        scope: str = "",
        task: str = "",
    ) -> bytes:
        """The ONNX of an arch's graph in ``scope`` (default: its whole static subnet; what
        the measured backend runs), zero weights but for the detector's random ones."""
        key, space, arch, classes, act, scope, task = self._resolve_arch(
            space_name, arch_yaml, num_classes, activation, scope, task
        )
        return self._arch_bytes.get_or_compute(
            key,
            lambda: arch_graph.arch_onnx(
                space, arch, num_classes=classes, activation=act, scope=scope, task=task
            ),
        )

    def arch_work(
        self,
        space_name: str,
        arch_yaml: str,
        num_classes: int = 0,
        activation: str = "",
        scope: str = "",
        task: str = "",
    ) -> GraphWork:
        """The graph analysis of an arch in ``scope``, cached by the arch itself. Built
        without weight data (the analysis reads shapes only) but for the traced detector;
        ``sha256`` is the hash of the graph analysed."""
        key, space, arch, classes, act, scope, task = self._resolve_arch(
            space_name, arch_yaml, num_classes, activation, scope, task
        )

        def build() -> GraphWork:
            model = arch_graph.arch_graph_for(
                scope, space, arch, num_classes=classes, activation=act, weights="none",
                task=task,
            )  # fmt: skip
            return analyze_model(model, model_sha256(model.SerializeToString()))

        return self._arch_graphs.get_or_compute(key, build)

    # ---- the estimate ---------------------------------------------------------------------
    def estimate(
        self,
        onnx_bytes: bytes | None = None,
        *,
        arch: tuple[str, str, int]
        | tuple[str, str, int, str]
        | tuple[str, str, int, str, str]
        | tuple[str, str, int, str, str, str]
        | None = None,
        profile: str = "",
        hw_config: Mapping[str, float] | None = None,
        backend: str = "",
        input_shapes: Mapping[str, Sequence[int]] | None = None,
        metrics: Sequence[str] = (),
        with_layers: bool = True,
        deadline: float | None = None,
        client_gone: Callable[[], bool] | None = None,
    ) -> Estimate:
        """``metrics`` is a subset of ("latency", "energy"); empty = both. ``deadline`` is a
        ``time.monotonic()`` instant: every stage stops at it (the measured backend too), as
        at ``client_gone()``."""
        with request_scope(deadline, client_gone or (lambda: False)):
            return self._estimate(
                onnx_bytes, arch, profile, hw_config, backend, input_shapes, metrics,
                with_layers, deadline,
            )  # fmt: skip

    def _estimate(  # type: ignore[no-untyped-def]
        self, onnx_bytes, arch, profile, hw_config, backend, input_shapes, metrics, with_layers,
        deadline,
    ) -> Estimate:  # fmt: skip
        hw = self.registry.get(profile).with_overrides(hw_config)
        backend = backend or hw.default_backend
        if backend not in hw.backends:
            raise InvalidRequest(
                f"backend {backend[:80]!r} is not available for profile {hw.name!r}; it has "
                f"{list(hw.backends)}"
            )
        bad = [m for m in metrics if m not in ("latency", "energy")]
        if bad:
            raise InvalidRequest(f"unknown metrics {bad[:5]}; allowed: latency, energy")
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
        check_deadline("the model's analysis")
        try:
            result = analytical.estimate(work, hw, with_layers and backend == "analytical")
        except (OverflowError, ValueError) as exc:  # a finite but extreme hw_config value
            raise InvalidRequest(
                f"the estimate is out of range for profile {hw.name!r} with hw_config "
                f"{dict(hw_config or {})}: {exc}"
            ) from None
        _check_range(result, hw_config)
        if arch is not None:  # the scope costed, which a client asking for one checks
            scope = (arch[4] if len(arch) > 4 else "") or "network"
            result = _replace(result, notes=[*result.notes, f"{SCOPE_NOTE}{scope}"])
        if backend == "analytical":
            return _replace(
                result,
                latency_ms=result.latency_ms if want_latency else None,
                energy_mj=result.energy_mj if want_energy else None,
                estimator_version=ESTIMATOR_VERSION,
            )
        check_deadline("the analytical estimate")
        _check_runnable(work, self._measure_options.get("memory_mb"))
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
                self._measurer = OrtMeasurer(
                    lambda serving: self._backend_health("onnxruntime", serving),
                    **self._measure_options,
                )
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


def _check_task(task: str, scope: str) -> str:
    """The request's task (default classification): a known one, and one with a detector
    for the ``detector`` scope (only that scope imports the tasks, and torch with them)."""
    from gen5nas.spec.common import Task

    task = task or arch_graph.DEFAULT_TASK
    known = [t.value for t in Task]
    if task not in known:
        raise InvalidRequest(f"arch.task {task[:80]!r} is not one of {known}")
    if scope == "detector":
        from gen5nas.tasks.base import get_task

        scopes = list(get_task(task).cost_scopes)
        if "detector" not in scopes:
            raise InvalidRequest(
                f"arch.scope 'detector': task {task!r} has no detector graph; its cost scopes "
                f"are {scopes}"
            )
    return task


def _parse_arch_yaml(text: str) -> Any:
    """An arch document, bounded before it is built: its size, nesting and no anchors or
    aliases (an arch never needs them; an alias bomb expands to millions of nodes)."""
    if len(text.encode()) > MAX_ARCH_YAML_BYTES:
        raise TooLarge(
            f"arch.arch_yaml is {len(text.encode())} bytes, over the limit of "
            f"{MAX_ARCH_YAML_BYTES} (an arch document is a few hundred bytes)"
        )
    try:
        depth = 0
        for event in yaml.parse(text or "", Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise InvalidRequest("arch.arch_yaml: YAML anchors and aliases are not allowed")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise InvalidRequest(
                        f"arch.arch_yaml nests deeper than {MAX_YAML_DEPTH} levels"
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        return yaml.safe_load(text or "")
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"arch.arch_yaml is not valid YAML: {exc}") from None


_INT64_MAX = 2**63 - 1


def _check_range(est: Estimate, hw_config: Mapping[str, float] | None) -> None:
    """Refuse an estimate the answer cannot carry: a total beyond int64 or a non-finite
    number, which extreme (finite) hw_config values can give."""
    ints = [est.total_macs, est.total_bytes]
    floats = [v for v in (est.latency_ms, est.energy_mj) if v is not None]
    if any(v > _INT64_MAX for v in ints) or not all(math.isfinite(v) for v in floats):
        raise InvalidRequest(
            f"the estimate is out of range (latency {est.latency_ms}, energy {est.energy_mj}, "
            f"bytes {est.total_bytes}); check hw_config {dict(hw_config or {})}"
        )


def _check_runnable(work: GraphWork, memory_mb: int | None) -> None:
    """Refuse, before onnxruntime allocates it, a tensor larger than the worker's memory."""
    from gen5nas.estimator.measured import DEFAULT_MEMORY_MB

    limit = (memory_mb or DEFAULT_MEMORY_MB) * 2**20
    biggest = max((t for n in work.nodes for t in n.tensors), key=lambda t: t.numel, default=None)
    if biggest is not None and biggest.numel * 4 > limit:
        raise TooLarge(
            f"tensor {biggest.name!r} has {biggest.numel:.3g} elements, more than the "
            f"onnxruntime backend's {limit // 2**20} MiB of memory (server flag "
            f"--measure-memory-mb); the analytical backend can still estimate it"
        )


def _replace(est: Estimate, **changes: Any) -> Estimate:
    import dataclasses

    return dataclasses.replace(est, **changes)


def monotonic_deadline(seconds_left: float | None) -> float | None:
    return None if seconds_left is None else time.monotonic() + seconds_left

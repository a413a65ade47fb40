"""The measured backend: onnxruntime on this server's CPU (warm-up, repeated runs, median).

onnxruntime runs in a child process, never in the server's own: a model whose run
cannot finish (a ``Loop`` of 10^12 iterations, a tensor that fills memory) is stopped at its
request's deadline by killing the child, and a fresh one starts for the next request. The child
stays up between requests (onnxruntime imported, the last sessions kept), so the normal case
costs one pipe round trip more than an in-process run. ``on_health`` hears whether the backend
can serve (False while the child is down or restarting).

The child is a fresh interpreter (``python -c`` importing this module, talking over a socket
pair), like multiprocessing's spawn but without re-running the parent's main script:
a caller's script needs no ``if __name__ == "__main__"`` guard.

One measurement at a time per process: two concurrent timings on the same cores would slow
each other down and both be wrong. The per-layer breakdown, when asked for, comes from one extra
profiled run (onnxruntime's profiler), so the timed runs carry no profiling overhead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from gen5nas.estimator import errors
from gen5nas.estimator.errors import BackendUnavailable, DeadlineExceeded, InvalidRequest

log = logging.getLogger(__name__)

VERSION = "gen5nas-onnxruntime/1"
DEFAULT_MEMORY_MB = 8192  # address space of the child: a model that wants more fails there
DEFAULT_MAX_RUN_S = 300.0  # a measurement without a client deadline stops here
STARTUP_S = 120.0  # spawn + import onnxruntime, on a loaded machine
_KILL_SLACK_S = 0.25  # the child checks the deadline between runs itself; kill only past it

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
    """The parent's side: one child process, killed and replaced when a run overstays."""

    def __init__(
        self,
        on_health: Callable[[bool], None] = lambda serving: None,
        memory_mb: int = DEFAULT_MEMORY_MB,
        max_run_s: float = DEFAULT_MAX_RUN_S,
    ) -> None:
        self._lock = threading.Lock()  # one measurement (or start) at a time
        self._on_health = on_health
        self.memory_mb = memory_mb
        self.max_run_s = max_run_s
        self._proc: Any = None
        self._conn: Connection | None = None
        self._ready = False
        self._started = 0.0
        self._closed = False
        self.restarts = 0  # children killed or lost (each replaced by a fresh one)
        self.start_error = ""

    # ---- the child's lifecycle --------------------------------------------------------------
    def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        package_root = str(Path(__file__).resolve().parents[2])  # holds gen5nas/
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [package_root, *filter(None, [os.environ.get("PYTHONPATH")])])}  # fmt: skip
        cmd = [sys.executable, "-c", _CHILD, str(theirs.fileno()), str(self.memory_mb)]
        self._proc = subprocess.Popen(cmd, pass_fds=[theirs.fileno()], env=env)
        theirs.close()
        self._conn, self._ready = Connection(ours.detach()), False
        self._started = time.monotonic()

    def _ensure_ready(self, until: float) -> None:
        """A started child that has imported onnxruntime (caller holds the lock)."""
        if self._closed:
            raise BackendUnavailable("the onnxruntime backend is shutting down")
        if self._proc is None or self._proc.poll() is not None:
            if self._proc is not None:
                self._discard()
            self._spawn()
        if self._ready:
            return
        assert self._conn is not None
        give_up = self._started + STARTUP_S
        if not self._conn.poll(max(0.0, min(until, give_up) - time.monotonic())):
            if time.monotonic() >= give_up:
                self._fail_start(f"did not start within {STARTUP_S:.0f} s")
            raise DeadlineExceeded(
                "the request's deadline passed while the onnxruntime worker was starting"
            )
        try:
            msg = self._conn.recv()
        except (EOFError, OSError):
            msg = ("fail", f"exited with code {self._proc.poll()} while starting")
        if msg[0] != "ready":
            self._fail_start(msg[1])
        self._ready, self.start_error = True, ""
        self._on_health(True)

    def _fail_start(self, why: str) -> None:
        self._discard()
        self.start_error = why
        self._on_health(False)
        raise BackendUnavailable(f"the onnxruntime backend cannot serve: its worker {why}")

    def _discard(self) -> None:
        """Kill the child (if alive) and forget it; the next request starts a fresh one."""
        proc, conn = self._proc, self._conn
        self._proc, self._conn, self._ready = None, None, False
        if conn is not None:
            conn.close()
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)

    def _replace(self) -> None:
        """After a kill: NOT_SERVING, and a fresh child started now (in the background), so the
        next request finds it warm."""
        self._discard()
        self.restarts += 1
        self._on_health(False)

        def restart() -> None:
            with self._lock:
                try:
                    if not self._closed:
                        self._ensure_ready(time.monotonic() + STARTUP_S)
                except errors.EstimatorError as exc:
                    log.warning("onnxruntime worker restart failed: %s", exc)

        threading.Thread(target=restart, name="gen5nas-ort-restart", daemon=True).start()

    def close(self) -> None:
        """Stop the child (a run in progress ends with BackendUnavailable)."""
        self._closed = True
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()  # without the lock: a run holding it must end now
        with self._lock:
            self._discard()

    # ---- a measurement ----------------------------------------------------------------------
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
        ``time.monotonic()`` instant after which it stops and raises DeadlineExceeded (the
        child is killed if its run does not return by then)."""
        cap = time.monotonic() + self.max_run_s
        until = cap if deadline is None else min(deadline, cap)
        if not self._lock.acquire(timeout=max(0.0, until - time.monotonic())):
            raise DeadlineExceeded(
                "the onnxruntime backend was busy with another measurement until this "
                "request's deadline (it measures one model at a time)"
            )
        try:
            self._ensure_ready(until)
            assert self._conn is not None
            job = dict(onnx_bytes=onnx_bytes, input_shapes={k: list(v) for k, v in
                       input_shapes.items()}, warmup=warmup, repeats=repeats, threads=threads,
                       deadline=until, with_layers=with_layers)  # fmt: skip
            try:
                self._conn.send(job)
                answered = self._conn.poll(max(0.0, until - time.monotonic()) + _KILL_SLACK_S)
                reply = self._conn.recv() if answered else None
            except (EOFError, OSError, BrokenPipeError):
                code = self._proc.wait(10) if self._proc is not None else None
                self._replace()
                if self._closed:
                    raise BackendUnavailable("the onnxruntime backend is shutting down") from None
                raise InvalidRequest(
                    f"onnxruntime's worker died running this model (exit code {code}: it "
                    f"crashed, or needed more than this server's {self.memory_mb} MiB)"
                ) from None
            if reply is None:
                self._replace()
                limit = "the request's deadline" if until != cap else f"{self.max_run_s:.0f} s"
                raise DeadlineExceeded(
                    f"the onnxruntime run did not finish by {limit}; it was stopped (the "
                    f"model may not terminate, e.g. a Loop with a huge trip count)"
                )
        finally:
            self._lock.release()
        if reply[0] == "ok":
            return reply[1]  # type: ignore[no-any-return]
        cls = getattr(errors, reply[1], None)
        if not (isinstance(cls, type) and issubclass(cls, errors.EstimatorError)):
            cls = InvalidRequest
        raise cls(reply[2])


# ---- the child ------------------------------------------------------------------------------
# Imported by name (not run as __main__), so that what it sends unpickles as this module's types.
_CHILD = (
    "import sys; from multiprocessing.connection import Connection; "
    "from gen5nas.estimator.measured import _worker_main; "
    "_worker_main(Connection(int(sys.argv[1])), int(sys.argv[2]))"
)


def _worker_main(conn: Connection, memory_mb: int) -> None:
    """Serve measurement jobs from ``conn`` until it closes."""
    try:
        if memory_mb > 0:
            import resource

            limit = memory_mb * 2**20
            _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        import onnxruntime as ort
    except BaseException as exc:  # reported to the parent, which says why
        conn.send(("fail", f"failed to import onnxruntime: {type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", ort.__version__))
    sessions = _Sessions(ort, capacity=2)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        try:
            conn.send(("ok", _measure(ort, sessions, **job)))
        except errors.EstimatorError as exc:
            conn.send(("error", type(exc).__name__, str(exc)))
        except Exception as exc:  # onnxruntime's own error types: the model or its inputs
            if isinstance(exc, MemoryError) or "Failed to allocate memory" in str(exc):
                conn.send(("error", "TooLarge", f"onnxruntime ran out of the worker's "
                           f"{memory_mb} MiB (server flag --measure-memory-mb): {exc}"))  # fmt: skip
            else:
                conn.send(
                    ("error", "InvalidRequest", f"onnxruntime failed running the model: {exc}")
                )


class _Sessions:
    """The last ``capacity`` sessions, by model hash and thread count (the same model asked
    under several profiles loads once)."""

    def __init__(self, ort: Any, capacity: int) -> None:
        self.ort = ort
        self.capacity = capacity
        self._data: OrderedDict[tuple[str, int], Any] = OrderedDict()

    def get(self, onnx_bytes: bytes, threads: int) -> Any:
        key = (hashlib.sha256(onnx_bytes).hexdigest(), threads)
        if key in self._data:
            self._data.move_to_end(key)
            return self._data[key]
        options = _options(self.ort, threads)
        try:
            session = self.ort.InferenceSession(
                onnx_bytes, options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise InvalidRequest(f"onnxruntime cannot load the model: {exc}") from None
        self._data[key] = session
        while len(self._data) > self.capacity:
            self._data.popitem(last=False)
        return session


def _measure(
    ort: Any,
    sessions: _Sessions,
    onnx_bytes: bytes,
    input_shapes: Mapping[str, Sequence[int]],
    warmup: int,
    repeats: int,
    threads: int,
    deadline: float,
    with_layers: bool,
) -> Measurement:
    session = sessions.get(onnx_bytes, threads)
    feeds = _feeds(session, input_shapes)
    runs: list[float] = []
    for i in range(max(warmup, 0) + max(repeats, 1)):
        if time.monotonic() > deadline:
            raise DeadlineExceeded(
                f"deadline passed after {len(runs)} timed runs of {repeats}; give the "
                f"request a longer deadline or lower measured.repeats in the profile"
            )
        t0 = time.perf_counter()
        session.run(None, feeds)
        if i >= warmup:
            runs.append((time.perf_counter() - t0) * 1e3)
    layers = _profile_layers(ort, onnx_bytes, threads, feeds) if with_layers else []
    return Measurement(statistics.median(runs), runs, layers, ort.__version__)


def _options(ort, threads: int):  # type: ignore[no-untyped-def]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 0:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return options


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


def _profile_layers(ort, onnx_bytes: bytes, threads: int, feeds) -> list[tuple[str, str, float]]:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory(prefix="gen5nas-ort-prof-") as tmp:
        options = _options(ort, threads)
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

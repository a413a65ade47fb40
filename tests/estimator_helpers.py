"""Shared helpers of the estimator tests: a CLI server in a subprocess (so a test can kill it),
its worker processes, and ONNX models that are hard on a server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[1]


class ServerProcess:
    """``gen5nas estimator serve`` on free loopback ports, in its own process."""

    def __init__(self, n_ports: int = 1, *extra: str) -> None:
        cmd = [sys.executable, "-m", "gen5nas", "estimator", "serve", "--host", "127.0.0.1",
               "--port", *(["0"] * n_ports), "--grace", "2", *extra]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until the server is up (or died)
        if "listening on" not in line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.proc.kill()
            raise RuntimeError(f"estimator server did not start: {line!r} {err[-2000:]}")
        self.ports = [int(a.rsplit(":", 1)[1]) for a in line.split("listening on", 1)[1].split()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def endless_loop(trip_count: int = 10**12) -> bytes:
    """x[1, 4] + 1 + 1 + ... (``trip_count`` times): onnxruntime runs every iteration."""
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    body = helper.make_graph(
        [helper.make_node("Add", ["v_in", "one"], ["v_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [1, 4])],
        [one],
    )  # fmt: skip
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trip", "cond", "x"], ["y"], body=body)],
        "endless",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [helper.make_tensor("trip", TensorProto.INT64, [], [trip_count]),
         helper.make_tensor("cond", TensorProto.BOOL, [], [True])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def chain_of_unknown_ops(n: int) -> bytes:
    """x[1, 8] -> Fancy -> Relu -> Fancy -> Relu ... (``n`` nodes): every other op is a custom
    one ONNX infers no shape for."""
    nodes, prev = [], "x"
    for i in range(n):
        op, domain = ("Fancy", "com.example") if i % 2 == 0 else ("Relu", "")
        nodes.append(helper.make_node(op, [prev], [f"t{i}"], domain=domain, name=f"n{i}"))
        prev = f"t{i}"
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, None)],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model.SerializeToString()


def ort_workers(pid: int) -> list[int]:
    """The onnxruntime worker processes among the children of ``pid``, from /proc."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"gen5nas.estimator.measured" in cmdline:
                found.append(child)
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie awaiting its reaper is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"

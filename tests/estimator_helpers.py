"""Shared helpers of the estimator tests: a CLI server in a subprocess (so a test can kill it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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

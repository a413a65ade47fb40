"""Small helpers shared by the real-part fixtures: free ports, child processes, log tails."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = REPO_ROOT / "scripts"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, or a note that it is missing."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"<no log at {path}>"
    return "\n".join(text.splitlines()[-lines:])


class Child:
    """A long-running child process whose stdout/stderr go to a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, cwd: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check_alive(self) -> None:
        """Raise with the log tail if the process has exited."""
        if not self.alive():
            raise RuntimeError(
                f"{self.name} exited with code {self.proc.returncode}; log tail:\n"
                f"{log_tail(self.log_path)}"
            )

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds; closes the log."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout)
        self._log.close()


def wait_until(
    what: str,
    probe: Callable[[], object],
    timeout: float,
    children: list[Child],
    interval: float = 0.25,
) -> None:
    """Poll `probe()` until it returns truthy; fail early when a child dies."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        for child in children:
            child.check_alive()
        try:
            if probe():
                return
        except Exception as exc:  # probe failures are expected while starting
            last_error = exc
        time.sleep(interval)
    logs = "\n".join(f"--- {c.name} ---\n{log_tail(c.log_path)}" for c in children)
    raise TimeoutError(
        f"timed out after {timeout:.0f}s waiting for {what} ({last_error!r})\n{logs}"
    )

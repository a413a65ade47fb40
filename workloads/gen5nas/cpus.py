"""How many cores this process may use: its affinity mask (``taskset``, a container's cpuset),
not the machine's count, so that jobs pinned beside each other do not oversubscribe."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1

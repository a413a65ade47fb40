"""The seed's per-run log folder, ``<work dir>/<YYYYmmdd_HHMMSS>/``, made unique.

The stamp has one-second resolution: a run and its resume (or two commands) started in the same
second would share a folder and mix their logs, so a taken name gets a ``_1``, ``_2``... suffix.
``mkdir`` without ``exist_ok`` claims the name: two processes racing never get the same folder.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path


def new_log_dir(work_dir: str | Path) -> Path:
    """Create and return a fresh ``work_dir/<timestamp>[_N]`` folder (``work_dir`` too)."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    suffix = 0
    while True:
        log_dir = work_dir / (stamp if suffix == 0 else f"{stamp}_{suffix}")
        try:
            log_dir.mkdir()
        except FileExistsError:
            suffix += 1
            continue
        return log_dir

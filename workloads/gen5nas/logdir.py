"""The run's log file: the seed's per-run folder ``<work dir>/<YYYYmmdd_HHMMSS>/`` and the
handler that copies the ``gen5nas`` loggers' records into a file there.

Every step (training, retraining, search and its worker processes, export) opens its log file
through :class:`LogFile`, so the format, the level and the clean-up are the same everywhere:
the file gets INFO records whatever the console's level (the ``gen5nas`` logger is lowered to
INFO while the file is open and restored by :meth:`LogFile.close`).

The folder stamp has one-second resolution: a run and its resume (or two commands) started in
the same second would share a folder and mix their logs, so a taken name gets a ``_1``,
``_2``... suffix. ``mkdir`` without ``exist_ok`` claims the name: two processes racing never
get the same folder.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from types import TracebackType

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PACKAGE_LOGGER = "gen5nas"


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


class LogFile:
    """A file handler on the ``gen5nas`` logger, at INFO; appends whole lines, so several
    processes (a search's workers) can share one file. ``fmt`` lets a worker tag its lines."""

    def __init__(self, path: str | Path, fmt: str = LOG_FORMAT) -> None:
        self.path = Path(path)
        self.handler = logging.FileHandler(self.path)
        self.handler.setFormatter(logging.Formatter(fmt))
        self.handler.setLevel(logging.INFO)
        logger = logging.getLogger(PACKAGE_LOGGER)
        self._previous_level = logger.level
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        logger.addHandler(self.handler)
        self._open = True

    @classmethod
    def in_new_log_dir(cls, work_dir: str | Path, name: str) -> LogFile:
        """``<work dir>/<timestamp>/<name>.log`` (the folder is :attr:`log_dir`)."""
        return cls(new_log_dir(work_dir) / f"{name}.log")

    @property
    def log_dir(self) -> Path:
        return self.path.parent

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        logger = logging.getLogger(PACKAGE_LOGGER)
        logger.removeHandler(self.handler)
        logger.setLevel(self._previous_level)
        self.handler.close()

    def __enter__(self) -> LogFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

"""A run's output files in its work dir, for every step that writes them (supernet training,
retraining, search, export)::

    <work dir>/<config file>                     a copy of the manifest the run was given
    <work dir>/<YYYYmmdd_HHMMSS>/<name>.log      the log file (gen5nas.logdir.LogFile)
    <work dir>/<YYYYmmdd_HHMMSS>/resolved_config.yaml
    <work dir>/metrics.jsonl                     {"type", "epoch", "iteration", ...} per line
    <work dir>/tensorboard/                      the same scalars, when tensorboard is installed

Only the process that writes (rank 0) opens a :class:`RunOutputs`. Metrics are opt-in
(:meth:`RunOutputs.start_metrics`): a resumed run first trims ``metrics.jsonl`` back to the
iteration it resumes from, so the redone steps are not recorded twice.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import yaml

from gen5nas.atomic import atomic_write_text
from gen5nas.logdir import LOG_FORMAT, LogFile

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
RESOLVED_CONFIG_FILE = "resolved_config.yaml"


def copy_config(config_file: str | Path, work_dir: str | Path) -> Path:
    """Copy the manifest into the work dir (as the seed keeps its config); a no-op when
    ``config_file`` is the work dir's own copy (``-f`` may name it)."""
    src = Path(config_file)
    dst = Path(work_dir) / src.name
    if src.resolve() != dst.resolve():
        shutil.copyfile(src, dst)
    return dst


def trim_metrics(path: Path, iteration: int) -> None:
    """Keep the records of ``path`` up to ``iteration`` (the steps past it are about to be
    redone) and drop lines that do not parse: a kill mid-append leaves a torn last line.
    Rewritten atomically, so a second kill here cannot lose the history."""
    keep: list[str] = []
    torn = 0
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            torn += 1
            continue
        if not isinstance(record, dict):
            torn += 1
        elif record.get("iteration", 0) <= iteration:
            keep.append(line)
    if torn:
        log.warning("%s: dropped %d unparseable line(s) (a write cut short by a kill)", path, torn)
    atomic_write_text(path, "".join(line + "\n" for line in keep))


class RunOutputs:
    """The log file, the config copies and (optionally) the metrics of one run."""

    def __init__(
        self,
        work_dir: str | Path,
        log_name: str,
        *,
        config_file: str | Path | None = None,
        resolved_config: dict[str, Any] | None = None,
        log_format: str = LOG_FORMAT,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.log_file = LogFile.in_new_log_dir(self.work_dir, log_name)
        self.log_dir = self.log_file.log_dir
        if log_format != LOG_FORMAT:
            self.log_file.handler.setFormatter(logging.Formatter(log_format))
        if config_file is not None:
            copy_config(config_file, self.work_dir)
        if resolved_config is not None:
            (self.log_dir / RESOLVED_CONFIG_FILE).write_text(
                yaml.safe_dump(resolved_config, sort_keys=False)
            )
        self.metrics_path: Path | None = None
        self._tb: Any = None

    def start_metrics(self, iteration: int, resumed: bool, tensorboard: bool = True) -> None:
        """Append metrics from here on; the records past ``iteration`` (left by an attempt
        killed before its first checkpoint, or redone after a resume) are dropped first."""
        self.metrics_path = self.work_dir / METRICS_FILE
        if self.metrics_path.exists():
            trim_metrics(self.metrics_path, iteration)
        if not tensorboard:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(
                str(self.work_dir / "tensorboard"), purge_step=iteration if resumed else None
            )
        except ImportError:
            log.debug("tensorboard is not installed; metrics go to %s only", self.metrics_path)

    def record(self, kind: str, values: dict[str, float], epoch: int, iteration: int) -> None:
        if self.metrics_path is None:
            raise RuntimeError("RunOutputs.record before start_metrics")
        record = {"type": kind, "epoch": epoch, "iteration": iteration, **values}
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(f"{kind}/{key}", value, iteration)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        self.log_file.close()

"""A search's log folder: ``<work dir>/<timestamp>/`` with ``search.log`` (the records of the
search and its workers) and ``resolved_config.yaml``, and a copy of the config file in the work
dir.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import yaml

from gen5nas.logdir import new_log_dir
from gen5nas.search.settings import SearchSettings
from gen5nas.search.study import redact


def open_log_dir(work_dir: Path, settings: SearchSettings) -> logging.Handler:
    """The seed's ``<work dir>/<timestamp>/`` log folder (search.log, the resolved config) and
    a copy of the config file in the work dir."""
    log_dir = new_log_dir(work_dir)
    handler = logging.FileHandler(log_dir / "search.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    logger = logging.getLogger("gen5nas")
    logger.addHandler(handler)
    # The file gets INFO records whatever the console's level; restored by close_log_dir.
    handler.previous_level = logger.level  # type: ignore[attr-defined]
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    resolved = settings.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    resolved.update(
        checkpoint=settings.checkpoint,
        storage={**resolved.get("storage", {}), "url": _redacted(settings)},
    )
    (log_dir / "resolved_config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    if settings.config_file:
        src = Path(settings.config_file)
        dst = work_dir / src.name
        if src.resolve() != dst.resolve():
            shutil.copyfile(src, dst)
    return handler


def close_log_dir(handler: logging.Handler) -> None:
    logger = logging.getLogger("gen5nas")
    logger.removeHandler(handler)
    logger.setLevel(getattr(handler, "previous_level", logging.NOTSET))
    handler.close()


def _redacted(settings: SearchSettings) -> str:
    return redact(settings.storage_url)

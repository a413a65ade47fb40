"""A search's log folder: ``<work dir>/<timestamp>/`` with ``search.log`` (the records of the
search and its workers) and ``resolved_config.yaml``, and a copy of the config file in the work
dir — the same :class:`~gen5nas.run_outputs.RunOutputs` every step writes.
"""

from __future__ import annotations

from pathlib import Path

from gen5nas.run_outputs import RunOutputs
from gen5nas.search.settings import SearchSettings
from gen5nas.search.study import redact


def open_log_dir(work_dir: Path, settings: SearchSettings, cost_scope: str) -> RunOutputs:
    """The run's outputs; the resolved config names the storage without its password and
    the cost scope in effect (the spec's or the task's)."""
    resolved = settings.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    resolved.update(
        costScope=cost_scope,
        checkpoint=settings.checkpoint,
        storage={**resolved.get("storage", {}), "url": redact(settings.storage_url)},
    )
    return RunOutputs(
        work_dir, "search", config_file=settings.config_file or None, resolved_config=resolved
    )

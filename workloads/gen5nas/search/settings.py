"""What a search is asked to do (``SearchSettings``): the spec and where its parts are.

Picklable and torch-free: it is sent to spawned worker processes, and the CLI builds it before
anything heavy is imported.
"""

from __future__ import annotations

from dataclasses import dataclass

from gen5nas.spec.search import NASSearchSpec

# The estimator servers a search uses, as (host, ports): the spec's, or one started in-process.
Servers = tuple[tuple[str, tuple[int, ...]], ...]


@dataclass(frozen=True)
class SearchSettings:
    """Everything a worker process needs (picklable: it is sent to spawned workers)."""

    spec: NASSearchSpec
    checkpoint: str
    work_dir: str
    storage_url: str
    study_name: str
    servers: Servers = ()
    workers: int = 1
    worker_offset: int = 0  # this process's first worker index (seeds; cli.default_worker_offset)
    config_file: str | None = None
    log_file: str | None = None  # worker processes append their records to it

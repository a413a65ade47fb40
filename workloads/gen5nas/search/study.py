"""The Optuna study a search runs in, in any RDB storage Optuna supports.

Locally the default is an SQLite file in the work dir; in a cluster, PostgreSQL (psycopg2). The
storage has heartbeats: a trial whose worker died (SIGKILL, a lost node) goes stale after the
grace period, is marked FAIL and re-enqueued with the same params by Optuna's
``RetryHeartbeatStaleTrialCallback``, so no work is silently lost and no trial stays RUNNING forever.

``open_search_study`` opens the study of a search: its storage, the sampler of one worker, and its
identity (search space, cost key, cost scope, task), which a resumed search must share. The
study also names the task's metric (user attr ``metric``, e.g. ``accuracy/top1``): the operator,
which has no task registry, shows it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import logging
import sqlite3
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy.engine import URL, make_url

from gen5nas.errors import Gen5NasError, SpecError
from gen5nas.search.settings import SearchSettings
from gen5nas.spec.search import StorageSpec
from gen5nas.spec.space import SearchSpace

log = logging.getLogger(__name__)

DIRECTIONS: tuple[Literal["maximize"], Literal["minimize"]] = ("maximize", "minimize")
"""(accuracy, hardware cost)"""
STORAGE_FIELD = "storage.url"
SUPPORTED_DIALECTS = ("sqlite", "postgresql", "mysql")
# Study user attrs that pin what a study is about; resuming with other values is refused.
IDENTITY_ATTRS = ("space", "cost_key", "cost_scope", "task")
# What a study made before an identity attr existed was searched with.
IDENTITY_DEFAULTS = {"cost_scope": "network"}
METRIC_ATTR = "metric"  # the task's Metric.label


@contextlib.contextmanager
def quiet_experimental() -> Iterator[None]:
    """Silence Optuna's ExperimentalWarning for the features a search relies on on purpose
    (NSGA-III, heartbeats, the stale-trial retry)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def default_storage_url(work_dir: str | Path) -> str:
    return f"sqlite:///{Path(work_dir).resolve() / 'study.db'}"


def redact(url: str) -> str:
    """The URL with its password hidden (for messages and logs)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return "<unparsable URL>"


# A bare scheme names SQLAlchemy's default driver, which may not be the one installed (for
# postgresql, psycopg 3 since SQLAlchemy 2.1): use the first one of these that imports.
DRIVERS = {"postgresql": ("psycopg2", "psycopg"), "mysql": ("pymysql",)}


def _installed_driver(url: URL) -> URL:
    candidates = DRIVERS.get(url.drivername, ())
    for driver in candidates:
        if importlib.util.find_spec(driver) is not None:
            return url.set(drivername=f"{url.drivername}+{driver}")
    return url


def parse_storage_url(url: str) -> URL:
    """Validate an Optuna RDB URL; a bad one is a SpecError naming ``storage.url``. A bare
    ``postgresql://`` (or ``mysql://``) gets the installed driver."""
    example = (
        "sqlite:///path/study.db, postgresql://user@host:5432/db or "
        "postgresql+psycopg2://user@host:5432/db"
    )
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise SpecError(
            f"{url!r} is not a database URL; expected e.g. {example}", field=STORAGE_FIELD
        ) from None
    if parsed.get_backend_name() not in SUPPORTED_DIALECTS:
        raise SpecError(
            f"unsupported database {parsed.get_backend_name()!r} in {redact(url)}; use one of "
            f"{list(SUPPORTED_DIALECTS)}, e.g. {example}",
            field=STORAGE_FIELD,
        )
    parsed = _installed_driver(parsed)
    try:
        parsed.get_dialect().import_dbapi()
    except (sqlalchemy.exc.NoSuchModuleError, ImportError) as exc:
        raise SpecError(
            f"no driver for {redact(url)}: {exc}; accepted forms: {example}", field=STORAGE_FIELD
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise SpecError(
            "an in-memory SQLite study is lost when the process ends and is not shared by "
            "workers; give a file, e.g. sqlite:///work/study.db",
            field=STORAGE_FIELD,
        )
    return parsed


def _engine_kwargs(url: URL) -> dict[str, Any]:
    if url.get_backend_name() == "sqlite":
        return {"creator": functools.partial(_sqlite_connect, str(url.database))}
    # A bounded pool per worker (P workers x 4 connections at most), connections checked
    # before use so that a database restart or an idle-timeout does not fail a trial.
    kwargs: dict[str, Any] = {
        "pool_pre_ping": True,
        "pool_size": 2,
        "max_overflow": 2,
        "pool_recycle": 600,
    }
    if url.get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": 10}
    return kwargs


def _sqlite_connect(path: str) -> sqlite3.Connection:
    # Several worker processes share the file: wait for the write lock instead of failing.
    # isolation_level=None: the driver emits no BEGIN of its own; _begin_immediate does.
    conn = sqlite3.connect(path, timeout=60, check_same_thread=False, isolation_level=None)
    # WAL + synchronous=NORMAL: a commit is no longer an fsync (an Optuna trial commits once
    # per parameter, ~25 per trial); a crash of the process loses nothing committed, a power
    # loss at most the last commits. Readers (the operator, outputs) never block the writer.
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _begin_immediate(conn: sqlalchemy.engine.Connection) -> None:
    # Optuna hands a WAITING trial to a worker by reading its state and then writing RUNNING,
    # relying on SELECT ... FOR UPDATE, which SQLite ignores: two workers could both take the
    # same trial (and one then fails "Cannot tell a COMPLETE trial"). Taking SQLite's write
    # lock when each transaction begins serialises the read and the write.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def open_storage(url: str, spec: StorageSpec | None = None) -> RDBStorage:
    """Connect to (and, the first time, create the tables of) the study storage."""
    spec = spec or StorageSpec()
    parsed = parse_storage_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        with quiet_experimental():
            storage = RDBStorage(
                parsed.render_as_string(hide_password=False),
                engine_kwargs=_engine_kwargs(parsed),
                heartbeat_interval=spec.heartbeat_interval_s,
                grace_period=spec.grace_period_s,
                heartbeat_stale_trial_callback=retry_callback(spec.max_retry),
            )
        if parsed.get_backend_name() == "sqlite":
            sqlalchemy.event.listen(storage.engine, "begin", _begin_immediate)
        return storage
    except (sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise Gen5NasError(
            f"{STORAGE_FIELD}: cannot open the study storage {redact(url)}: {reason}"
        ) from None


def retry_callback(max_retry: int) -> RetryHeartbeatStaleTrialCallback:
    """Re-enqueues a stale trial with the same params (``retry_history`` records it)."""
    with quiet_experimental():
        return RetryHeartbeatStaleTrialCallback(max_retry=max_retry)


def open_study(
    storage: RDBStorage,
    study_name: str,
    sampler: optuna.samplers.BaseSampler,
    identity: dict[str, Any],
    metric_names: list[str] | None = None,
    labels: dict[str, str] | None = None,
) -> optuna.Study:
    """Create the study, or load it when it exists (the same command resumes a search).

    ``identity`` (search space, cost key, cost scope, task) is stored with a new study (and
    added to an older one that lacks a key); loading a study that was created for another
    identity is refused before anything is written to it. ``labels`` (user attrs) are set on
    every open.
    """
    identity = {k: _canonical(v) for k, v in identity.items()}
    existing = {s.study_name: s for s in storage.get_all_studies()}
    if study_name in existing:
        found = existing[study_name]
        if [d.name.lower() for d in found.directions] != list(DIRECTIONS):
            raise SpecError(
                f"study {study_name!r} in {redact(storage.url)} is not a gen5nas search "
                f"(directions {[d.name.lower() for d in found.directions]}); use another "
                "studyName",
                field="studyName",
            )
        for key, value in identity.items():
            stored = found.user_attrs.get(key, IDENTITY_DEFAULTS.get(key))
            if stored is not None and stored != value:
                raise SpecError(
                    f"study {study_name!r} in {redact(storage.url)} was created with another "
                    f"{key} ({_short(stored)}, this search: {_short(value)}); resume it with "
                    f"the same settings or choose a new studyName",
                    field="studyName",
                )
    study = optuna.create_study(
        storage=storage,
        sampler=sampler,
        study_name=study_name,
        directions=list(DIRECTIONS),
        load_if_exists=True,
    )
    for key, value in identity.items():
        if key not in study.user_attrs:
            study.set_user_attr(key, value)
    for key, text in (labels or {}).items():
        if study.user_attrs.get(key) != text:
            study.set_user_attr(key, text)
    if metric_names is not None and study.metric_names != metric_names:
        with quiet_experimental():  # what optuna-dashboard labels the objectives
            study.set_metric_names(metric_names)
    return study


COST_METRIC_NAMES = {"latency": "latency_ms", "energy": "energy_mj"}


def metric_names(task: str, cost_key: str, cost_scope: str = "network") -> list[str]:
    """The objectives' names: the task's headline metric (``accuracy/top1``) and the cost
    (``latency_ms``; ``backbone/latency_ms`` when only the backbone is costed)."""
    from gen5nas.tasks.base import get_task

    cost = COST_METRIC_NAMES[cost_key]
    return [
        get_task(task).metric.label,
        cost if cost_scope == "network" else f"{cost_scope}/{cost}",
    ]


def study_identity(
    space: SearchSpace, cost_key: str, task: str, cost_scope: str = "network"
) -> dict[str, Any]:
    """The ``IDENTITY_ATTRS`` of a search's study."""
    return {
        "space": space.model_dump(mode="json", by_alias=False),
        "cost_key": cost_key,
        "cost_scope": cost_scope,
        "task": task,
    }


def study_cost_scope(study: optuna.Study) -> str:
    """The cost scope a study was searched with (``network`` for one older than scopes)."""
    return str(study.user_attrs.get("cost_scope") or IDENTITY_DEFAULTS["cost_scope"])


def open_search_study(
    settings: SearchSettings,
    space: SearchSpace,
    task: str,
    cost_scope: str,
    worker_index: int = 0,
) -> optuna.Study:
    """The study of ``settings``, with the sampler of worker ``worker_index`` (its own seed);
    ``cost_scope`` as :func:`gen5nas.search.cost.cost_scope` decided it."""
    # gen5nas.search.sampler imports quiet_experimental from this module: at the top, each
    # module would import the other half-initialised.
    from gen5nas.search.sampler import build_sampler
    from gen5nas.tasks.base import get_task

    spec = settings.spec
    sampler = build_sampler(spec.sampler, worker_index=worker_index)
    storage = open_storage(settings.storage_url, spec.storage)
    identity = study_identity(space, spec.cost_key.value, task, cost_scope)
    names = metric_names(task, spec.cost_key.value, cost_scope)
    labels = {METRIC_ATTR: get_task(task).metric.label}
    return open_study(storage, settings.study_name, sampler, identity, names, labels)


def _canonical(value: Any) -> Any:
    # What a JSON round trip through the storage gives back, so that stored == given.
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."

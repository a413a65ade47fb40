"""The study storage: URL validation, resume, refusing a study of another search."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import optuna
import pytest
from support.search import proxy_outcome, tiny_space

from gen5nas.errors import Gen5NasError, SpecError
from gen5nas.search.runner import Worker
from gen5nas.search.study import default_storage_url, open_storage, open_study
from gen5nas.spec import load_space
from gen5nas.spec.search import StorageSpec


def _identity(space_name: str = "mobilenetv2_tiny", cost_key: str = "latency") -> dict:
    return {
        "space": load_space(space_name).model_dump(mode="json"),
        "cost_key": cost_key,
        "task": "classification",
    }


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("not a url", ["storage.url", "not a database URL"]),
        ("oracle://u:p@h/db", ["storage.url", "unsupported database 'oracle'"]),
        ("sqlite://", ["storage.url", "in-memory"]),
        ("sqlite:///:memory:", ["storage.url", "in-memory"]),
        ("postgresql+nosuchdriver://u@h/db", ["storage.url", "no driver"]),
    ],
)
def test_invalid_storage_urls_name_the_field(url: str, words: list[str]) -> None:
    with pytest.raises(SpecError) as err:
        open_storage(url)
    assert err.value.field == "storage.url"
    for word in words:
        assert word in str(err.value)


def test_unreachable_database_is_a_clear_error_without_the_password() -> None:
    url = f"postgresql+psycopg2://user:s3cret@127.0.0.1:{_closed_port()}/db"
    with pytest.raises(Gen5NasError) as err:
        open_storage(url)
    text = str(err.value)
    assert "storage.url" in text and "cannot open the study storage" in text
    assert "s3cret" not in text


def test_sqlite_default_resumes_the_same_study(tmp_path: Path) -> None:
    url = default_storage_url(tmp_path / "work")
    space = tiny_space()
    storage = open_storage(url, StorageSpec())
    study = open_study(storage, "s", optuna.samplers.RandomSampler(seed=0), _identity())
    Worker(study, space, proxy_outcome, "latency", 4).run()
    before = [(t.number, t.values) for t in study.trials]

    again = open_study(open_storage(url), "s", optuna.samplers.RandomSampler(seed=1), _identity())
    assert [(t.number, t.values) for t in again.trials] == before
    Worker(again, space, proxy_outcome, "latency", 6).run()
    complete = again.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert len(complete) == 6
    assert [(t.number, t.values) for t in complete[:4]] == before


def test_a_waiting_trial_goes_to_one_sqlite_worker_only(tmp_path: Path) -> None:
    """SQLite ignores SELECT ... FOR UPDATE, which Optuna relies on when it hands a WAITING
    trial to a worker: every transaction must take the write lock when it begins, so that no
    other worker can read the trial as WAITING between this one's read and its write."""
    url = default_storage_url(tmp_path)
    storage = open_storage(url, StorageSpec())
    study = open_study(storage, "s", optuna.samplers.RandomSampler(seed=0), _identity())
    study.enqueue_trial({})
    (waiting,) = study.get_trials(deepcopy=False)
    other = open_storage(url, StorageSpec())  # a second worker's connection
    with storage.engine.connect() as conn, conn.begin():
        state = conn.exec_driver_sql(
            "SELECT state FROM trials WHERE trial_id = ?", (waiting._trial_id,)
        ).scalar_one()
        assert state == "WAITING"
        # While this transaction (only a read so far) is open, the other worker cannot write.
        probe = sqlite3.connect(str(tmp_path / "study.db"), timeout=0, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            probe.execute("BEGIN IMMEDIATE")
        probe.close()
    # Once it is committed the other worker gets the trial, exactly once.
    assert other.set_trial_state_values(waiting._trial_id, optuna.trial.TrialState.RUNNING)
    assert not storage.set_trial_state_values(waiting._trial_id, optuna.trial.TrialState.RUNNING)


@pytest.mark.parametrize(
    ("identity", "what"),
    [
        (_identity("mobilenetv2_sample1"), "space"),
        (_identity(cost_key="energy"), "cost_key"),
        # the study below predates cost scopes: it costed the whole network
        ({**_identity(), "cost_scope": "backbone"}, "cost_scope"),
    ],
)
def test_a_study_of_another_search_is_refused_and_left_intact(
    tmp_path: Path, identity: dict, what: str
) -> None:
    url = default_storage_url(tmp_path)
    study = open_study(open_storage(url), "s", optuna.samplers.RandomSampler(), _identity())
    Worker(study, tiny_space(), proxy_outcome, "latency", 3).run()
    with pytest.raises(SpecError) as err:
        open_study(open_storage(url), "s", optuna.samplers.RandomSampler(), identity)
    assert err.value.field == "studyName"
    assert f"another {what}" in str(err.value)
    reloaded = optuna.load_study(study_name="s", storage=url)
    assert len(reloaded.get_trials(states=[optuna.trial.TrialState.COMPLETE])) == 3


def test_a_study_older_than_cost_scopes_resumes_as_network(tmp_path: Path) -> None:
    url = default_storage_url(tmp_path)
    open_study(open_storage(url), "s", optuna.samplers.RandomSampler(), _identity())
    study = open_study(
        open_storage(url), "s", optuna.samplers.RandomSampler(),
        {**_identity(), "cost_scope": "network"}, labels={"metric": "accuracy/top1"},
    )  # fmt: skip
    assert study.user_attrs["cost_scope"] == "network"  # recorded from now on
    assert study.user_attrs["metric"] == "accuracy/top1"


def test_a_foreign_study_is_refused(tmp_path: Path) -> None:
    url = default_storage_url(tmp_path)
    optuna.create_study(study_name="other", storage=url, direction="minimize")
    with pytest.raises(SpecError, match="not a gen5nas search"):
        open_study(open_storage(url), "other", optuna.samplers.RandomSampler(), _identity())


def test_grace_period_must_exceed_heartbeat() -> None:
    with pytest.raises(ValueError, match="gracePeriodS"):
        StorageSpec(heartbeat_interval_s=10, grace_period_s=5)


def test_database_engines_check_connections_and_bound_their_pool() -> None:
    """Every worker holds at most pool_size + max_overflow connections to a shared database,
    each checked before use (a restarted database or an idle timeout fails no trial)."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    from gen5nas.search.study import _engine_kwargs

    url = make_url("postgresql+psycopg2://u:p@db.example:5432/optuna")
    kwargs = _engine_kwargs(url)
    assert kwargs["pool_pre_ping"] is True
    assert kwargs["pool_size"] + kwargs["max_overflow"] <= 4
    assert kwargs["connect_args"]["connect_timeout"] > 0
    engine = sqlalchemy.create_engine(url, **kwargs)  # SQLAlchemy takes them (no connection yet)
    try:
        assert engine.pool._pre_ping  # type: ignore[attr-defined]
        assert engine.pool.size() == kwargs["pool_size"]  # type: ignore[attr-defined]
        assert engine.pool._max_overflow == kwargs["max_overflow"]  # type: ignore[attr-defined]
    finally:
        engine.dispose()
    mysql = _engine_kwargs(make_url("mysql+pymysql://u:p@db/optuna"))
    assert mysql["pool_pre_ping"] is True and "connect_args" not in mysql
    # SQLite: a file shared by local processes, no pool to bound; its own connection settings.
    sqlite = _engine_kwargs(make_url("sqlite:////tmp/x/study.db"))
    assert set(sqlite) == {"creator"}

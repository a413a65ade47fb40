"""Read (and, when asked, delete) a NASSearch's Optuna study. The DSN never leaves this module
except as ``redact``-ed text; storages are cached per DSN so each resync pass reuses a pool."""

from __future__ import annotations

import threading
from typing import Any

from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial

from gen5nas.search.study import open_storage, redact

_lock = threading.Lock()
_storages: dict[str, RDBStorage] = {}


class StudyUnavailable(Exception):
    """The storage cannot be reached or holds no such study (the message has no password)."""


def _storage(dsn: str) -> RDBStorage:
    with _lock:
        if dsn not in _storages:
            _storages[dsn] = open_storage(dsn)
        return _storages[dsn]


def read_trials(dsn: str, study_name: str) -> tuple[list[FrozenTrial], dict[str, Any]] | None:
    """The study's trials and user attrs, or None when the study does not exist yet (the
    search workers create it)."""
    try:
        storage = _storage(dsn)
        try:
            study_id = storage.get_study_id_from_name(study_name)
        except KeyError:
            return None
        return (
            storage.get_all_trials(study_id, deepcopy=False),
            storage.get_study_user_attrs(study_id),
        )
    except Exception as exc:  # any driver error: report it without the DSN
        reason = str(getattr(exc, "orig", None) or exc).replace(dsn, redact(dsn))
        raise StudyUnavailable(
            f"cannot read study {study_name!r} in {redact(dsn)}: {reason.splitlines()[0][:300]}"
        ) from None


def delete_study(dsn: str, study_name: str) -> bool:
    """Delete the study; False when it was not there."""
    try:
        storage = _storage(dsn)
        try:
            study_id = storage.get_study_id_from_name(study_name)
        except KeyError:
            return False
        storage.delete_study(study_id)
        return True
    except Exception as exc:
        reason = str(getattr(exc, "orig", None) or exc).replace(dsn, redact(dsn))
        raise StudyUnavailable(
            f"cannot delete study {study_name!r} in {redact(dsn)}: {reason.splitlines()[0][:300]}"
        ) from None

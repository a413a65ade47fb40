"""Output locations checked before any work: a work dir or an ONNX path that cannot be written
must fail in the first second, not after hours of training or a whole search."""

from __future__ import annotations

import tempfile
from pathlib import Path

from gen5nas.errors import SpecError


def check_writable_dir(path: str | Path, field: str) -> Path:
    """Prove a file can be written in ``path``, or, while it does not exist yet, in its nearest
    existing ancestor (where the step will create it): nothing is created by the check, so a
    run refused for another reason leaves no empty work dir behind."""
    path = Path(path)
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        if probe == path:
            raise SpecError(f"{path} exists and is not a directory", field=field)
        raise SpecError(f"cannot write in {path}: {probe} is not a directory", field=field)
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".gen5nas-write-check-"):
            pass
    except OSError as exc:
        raise SpecError(
            f"cannot write in {probe}: {exc.strerror or exc}; give a writable directory",
            field=field,
        ) from None
    return path


def check_writable_file(path: str | Path, field: str) -> Path:
    """An output file path: not a directory, and its directory writable."""
    path = Path(path)
    if path.is_dir():
        raise SpecError(f"{path} is a directory; give a file path (e.g. model.onnx)", field=field)
    check_writable_dir(path.parent, field)
    return path

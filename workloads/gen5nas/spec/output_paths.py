"""Output locations checked before any work: a work dir or an ONNX path that cannot be written
must fail in the first second, not after hours of training or a whole search."""

from __future__ import annotations

import tempfile
from pathlib import Path

from gen5nas.errors import SpecError


def check_writable_dir(path: str | Path, field: str) -> Path:
    """Create ``path`` (and its parents) if needed and prove a file can be written in it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".gen5nas-write-check-"):
            pass
    except FileExistsError:
        raise SpecError(f"{path} exists and is not a directory", field=field) from None
    except OSError as exc:
        raise SpecError(
            f"cannot write in {path}: {exc.strerror or exc}; give a writable directory",
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

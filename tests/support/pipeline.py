"""Helpers shared by the pipeline tests (not a test module)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

API = "gen5nas.io/v1alpha1"


def write_manifest(path: Path, kind: str, spec: dict[str, Any]) -> Path:
    """A one-document manifest of ``kind`` with ``spec``, as `gen5nas run` reads them."""
    path.write_text(
        yaml.safe_dump(
            {"apiVersion": API, "kind": kind, "metadata": {"name": "tiny"}, "spec": spec}
        )
    )
    return path

"""The JSON card written next to each exported ONNX model: what it is, where it came from, how
accurate and how costly it is, and how to check that the file is the one described.

``<model>.card.json`` sits beside ``<model>.onnx``. Keys (``format`` versions them):

- ``onnx``: file name, sha256, bytes, opset, input/output names and shapes, dynamic batch, and
  the onnxruntime parity check (max abs difference, tolerance, number of real images);
- ``arch`` (the ``fix_subnets/trial_N.yaml`` form) and ``arch_summary``;
- ``source``: checkpoint path and the subnet's origin (arch file, inline, or study + trial with
  the values the search recorded for it);
- ``accuracy``: the task, its metric's label, ``inherited`` (supernet weights, BN
  recalibrated) and ``retrained`` (null unless retrained), the task's other metrics
  (``extra_metrics``: top-5, or a detector's AP50, AP75, AP s/m/l), and the data they were
  measured on;
- ``cost``: estimated ``latency_ms`` / ``energy_mj`` for ``profile`` of the task's cost
  ``scope`` (classification ``network``: the exported model; detection ``backbone``: the
  arch's stem and stages), the graph the search costs, so the two agree for one arch and
  profile; ``cost_whole_model``: the same for the exported ONNX file itself (``scope`` names
  it). Either has ``error`` instead when no estimator answered (the export does not depend
  on it);
- ``postprocess``: the outputs, what they mean and how to decode them (a detector's score,
  box decoding, thresholds, NMS, and for ``raw`` its point grid: ``points``, ``strides``);
- ``params``, ``macs`` (at the exported input resolution, batch 1).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gen5nas.atomic import atomic_write_text

CARD_FORMAT = "gen5nas.onnx-card/v1"


def card_path_for(onnx_path: str | Path) -> Path:
    path = Path(onnx_path)
    return path.with_name(path.stem + ".card.json")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_card(
    *,
    onnx: dict[str, Any],
    arch: dict[str, Any],
    arch_summary: str,
    source: dict[str, Any],
    accuracy: dict[str, Any],
    cost: dict[str, Any],
    cost_whole_model: dict[str, Any],
    params: int,
    macs: int,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from gen5nas import __version__

    card: dict[str, Any] = {
        "format": CARD_FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "gen5nas_version": __version__,
        "onnx": onnx,
        "arch": arch,
        "arch_summary": arch_summary,
        "source": source,
        "accuracy": accuracy,
        "cost": cost,
        "cost_whole_model": cost_whole_model,
        "params": int(params),
        "macs": int(macs),
    }
    card.update(extra or {})
    return card


def card_json(data: dict[str, Any]) -> str:
    """The card's file content (serialised before the ONNX file is written: see export)."""
    return json.dumps(data, indent=2, default=str) + "\n"


def write_json_atomic(data: dict[str, Any], path: str | Path) -> Path:
    """Write ``data`` as JSON via a temp file in the same folder, fsync and rename."""
    return atomic_write_text(path, card_json(data))


def read_card(path: str | Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(path).read_text())
    return data


def verify_card(card_path: str | Path) -> bool:
    """True when the ONNX file next to the card still has the sha256 the card records."""
    card = read_card(card_path)
    onnx_file = Path(card_path).with_name(card["onnx"]["file"])
    return onnx_file.exists() and file_sha256(onnx_file) == card["onnx"]["sha256"]

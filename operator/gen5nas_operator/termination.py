"""``python -m gen5nas_operator.termination WORK_DIR``: the export pod's last step. It copies the
newest ONNX card under WORK_DIR, compacted to what the operator puts in status, into the
container's termination message (kept under the kubelet's 4 KiB cap), where the operator reads
it (``kinds.export.status.export_report``) without mounting the results PVC."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

MESSAGE_PATH = Path("/dev/termination-log")
LIMIT = 4000


def compact_card(card_path: Path) -> dict[str, Any]:
    card = json.loads(card_path.read_text())
    onnx = card.get("onnx") or {}
    parity = onnx.get("parity") or {}
    return {
        "onnx": {
            "path": str(card_path.with_name(onnx.get("file", ""))),
            "sha256": onnx.get("sha256"),
            "bytes": onnx.get("bytes"),
            "parity": {
                k: parity.get(k) for k in ("max_abs_diff", "tolerance", "passed") if k in parity
            },
        },
        "cost": {
            k: v
            for k, v in (card.get("cost") or {}).items()
            if k in ("latency_ms", "energy_mj", "profile", "scope")
        },
        "arch_summary": str(card.get("arch_summary", ""))[:200],
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    work = Path(args[0])
    out = Path(args[1]) if len(args) > 1 else MESSAGE_PATH
    cards = sorted(work.rglob("*.card.json"), key=lambda p: p.stat().st_mtime)
    if not cards:
        print(f"no *.card.json under {work}", file=sys.stderr)
        return 1
    text = json.dumps(compact_card(cards[-1]), separators=(",", ":"))
    out.write_text(text[:LIMIT])
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Two CPU processes (gloo) evaluate one detector on their shards of a COCO val split: the
detections are gathered, so both ranks report what one process reports on the whole split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from support.coco import write_coco

from gen5nas.data.coco import build_detection_loaders
from gen5nas.spec import load_space
from gen5nas.spec.common import DatasetSpec
from gen5nas.tasks.detection import DETECTION

RESOLUTION = (64, 64)


def _metrics(root: str) -> dict[str, float]:
    spec = DatasetSpec(kind="coco", path=root, batch_size=2, num_workers=0)
    loaders = build_detection_loaders(spec, RESOLUTION, train=False)
    torch.manual_seed(0)
    net = DETECTION.build_supernet(load_space("mobilenetv2_tiny_det"), len(loaders.classes))
    with torch.no_grad():  # a head that fires: random-init logits sit below every threshold
        net.head.cls_logits.bias.fill_(2.0)
    assert loaders.val is not None
    return DETECTION.evaluate(net.eval(), loaders.val, torch.device("cpu"))


def _worker(rank: int, world: int, root: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=world
    )
    try:
        Path(out, f"rank{rank}.json").write_text(json.dumps(_metrics(root)))
    finally:
        dist.destroy_process_group()


def test_two_ranks_score_the_whole_split_as_one_process(tmp_path: Path) -> None:
    root = write_coco(tmp_path / "coco")
    alone = _metrics(str(root))
    mp.spawn(_worker, args=(2, str(root), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]
    assert ranks[0]["images"] == alone["images"] > 1  # each rank scored only its half
    assert alone["bbox_mAP_50"] > 0  # something to gather
    # the loss is a mean of per-batch FCOS losses (normalised by each batch's positives): it
    # depends on how images are grouped, which sharding changes; COCOeval's figures do not
    for key in (k for k in alone if k != "loss"):
        assert ranks[0][key] == pytest.approx(alone[key], abs=1e-9), key

"""Detection's sandwich rule: in-place distillation vs ground truth for every subnet.

Two supernets of ``mobilenetv2_tiny_det``, the same seed, data and schedule, trained by
:class:`~gen5nas.train.sandwich.SandwichStep` with the Detection task: one distils the
smaller subnets from the largest one's head outputs (``distillation.enabled: true``), the other
trains every subnet on the ground truth (``false``). The data is the training's: the bundled
scenes in their detection layout (``kind: scenes``, ``layout: detection``, 64 px), written by
the project's scene writer into ``<out>/data/scenes`` and read by
:func:`gen5nas.data.coco.build_detection_loaders` (flip and scale jitter in training, the
letterbox in validation); the optimiser and the per-iteration warmup + cosine are the
trainer's (``gen5nas.train.optim``), gradients clipped at the spec's default norm. After
training, the max and the min subnets are BN-recalibrated on the loaders' calibration batches
(``recalibrate_bn``, as the training's validation does) and scored by ``Detection.evaluate``
(COCOeval on the val split's COCO file). Prints one line per mode.

    python bench/bench_det_distillation.py --steps 600      # ~2 min per mode on one CPU thread
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import torch
from torch.optim.lr_scheduler import LambdaLR

from gen5nas.data import Batch
from gen5nas.data.coco import build_detection_loaders
from gen5nas.data.loaders import DataLoaders
from gen5nas.detection.model import DetectionSupernet
from gen5nas.spec import load_space
from gen5nas.spec.common import DatasetSpec
from gen5nas.spec.training import OptimizerSpec
from gen5nas.tasks.detection import DETECTION
from gen5nas.train.bn_calibration import recalibrate_bn
from gen5nas.train.optim import WarmupCosine, build_optimizer
from gen5nas.train.sandwich import SandwichStep, StepContext

SPACE = "mobilenetv2_tiny_det"


def scenes_spec(args: argparse.Namespace) -> DatasetSpec:
    return DatasetSpec.model_validate(
        {
            "kind": "scenes",
            "path": str(Path(args.out) / "data" / "scenes"),
            "numClasses": args.classes,
            "scenes": {
                "trainImages": args.train_images,
                "valImages": args.val_images,
                "imageSize": 64,
                "layout": "detection",
                "seed": 0,
            },
            "batchSize": args.batch,
            "numWorkers": 0,
        }
    )


def epochs_of(loaders: DataLoaders) -> Iterator[tuple[int, Batch]]:
    """(epoch, batch) over the training loader, epoch after epoch (the sampler reshuffled)."""
    assert loaders.train is not None and loaders.train_sampler is not None
    for epoch in itertools.count():
        loaders.train_sampler.set_epoch(epoch)
        for batch in loaders.train:
            yield epoch, batch


def run(distill: bool, args: argparse.Namespace, loaders: DataLoaders) -> str:
    space = load_space(SPACE)
    torch.manual_seed(0)
    net = cast(DetectionSupernet, DETECTION.build_supernet(space, loaders.num_classes).train())
    step = SandwichStep(space, num_random=1, distill=distill, task=DETECTION)
    optimizer_spec = OptimizerSpec(lr=args.lr)
    opt = build_optimizer(net, optimizer_spec, args.batch)
    # The trainer's per-iteration schedule over the bench's steps: 30 warmup steps, cosine to 0.
    lr = LambdaLR(opt, WarmupCosine(warmup_iters=30, total_iters=args.steps))
    started = time.perf_counter()
    for it, (epoch, batch) in enumerate(itertools.islice(epochs_of(loaders), args.steps)):
        opt.zero_grad(set_to_none=True)
        step(net, batch, StepContext(epoch, it))
        assert optimizer_spec.grad_clip_norm is not None
        torch.nn.utils.clip_grad_norm_(net.parameters(), optimizer_spec.grad_clip_norm)
        opt.step()
        lr.step()
    seconds = time.perf_counter() - started
    assert loaders.val is not None
    scores = []
    for arch in (space.max(), space.min()):
        net.set_active(arch)
        recalibrate_bn(net, loaders.calibration(args.calib_batches))
        m = DETECTION.evaluate(net, loaders.val, torch.device("cpu"))
        scores.append(f"mAP {m['bbox_mAP']:.3f} AP50 {m['bbox_mAP_50']:.3f}")
    mode = "distillation" if distill else "ground truth"
    return f"{mode:>12}: max {scores[0]} | min {scores[1]} | {args.steps} steps in {seconds:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--train-images", type=int, default=512)
    parser.add_argument("--val-images", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--calib-batches", type=int, default=4, help="BN recalibration")
    parser.add_argument("--out", default="work_dirs/bench-det-distillation", help="data home")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    space = load_space(SPACE)
    loaders = build_detection_loaders(
        scenes_spec(args), space.max_resolution(), seed=0, work_dir=args.out
    )
    print(
        f"{args.train_images} / {args.val_images} scenes (detection layout, 64 px, "
        f"{loaders.num_classes} classes) in {loaders.root}; batch {args.batch}, lr {args.lr}, "
        f"max + min + 1 random subnet per step; BN on {args.calib_batches} batches",
        flush=True,
    )
    for distill in (True, False):
        print(run(distill, args, loaders), flush=True)


if __name__ == "__main__":
    main()

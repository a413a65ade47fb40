"""Image classification, the first :class:`~gen5nas.tasks.base.Task`.

The head is the supernet's classifier (1x1 conv, global pooling, dropout, linear: in
:class:`gen5nas.supernet.Supernet`); the ground truth loss is cross entropy with label
smoothing, distillation the KL divergence to the largest subnet's soft output (Hinton, scaled
by T^2); the metric is top-1 accuracy in percent, with top-5 and the loss beside it. The
estimator costs the whole network (or its backbone, ``costScope: backbone``), and the export
feeds the static subnet as it is (logits out; no other post-processing).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gen5nas.data import Batch, DataLoaders, build_loaders
from gen5nas.spec import Arch, SearchSpace
from gen5nas.spec.common import DatasetSpec
from gen5nas.tasks.base import CostScope, Metric, Postprocess, register_task
from gen5nas.train.distributed import all_reduce_sum


def distillation_loss(student: Tensor, teacher: Tensor, temperature: float = 1.0) -> Tensor:
    """KL(teacher || student) on temperature-softened distributions, scaled by T^2 (Hinton)."""
    t = temperature
    return F.kl_div(
        F.log_softmax(student.float() / t, dim=1),
        F.log_softmax(teacher.float() / t, dim=1),
        reduction="batchmean",
        log_target=True,
    ) * (t * t)


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module,
    loader: Iterable[Batch],
    device: torch.device,
    channels_last: bool = False,
) -> dict[str, float]:
    """``accuracy_top1``/``accuracy_top5`` (percent), ``loss``, ``images`` and ``skipped``
    (unreadable images) over every rank's share of ``loader``."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(5, dtype=torch.float64, device=device)  # top1, top5, loss, n, skipped
    try:
        for batch in loader:
            totals[4] += batch.skipped
            if len(batch) == 0:
                continue
            images = batch.images.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            targets = batch.targets.to(device, non_blocking=True)
            logits = model(images).float()
            k = min(5, logits.shape[1])
            topk = logits.topk(k, dim=1).indices
            hits = topk.eq(targets[:, None])
            totals[0] += hits[:, 0].sum()
            totals[1] += hits.any(dim=1).sum()
            totals[2] += F.cross_entropy(logits, targets, reduction="sum")
            totals[3] += targets.shape[0]
    finally:
        model.train(was_training)
    all_reduce_sum(totals)
    n = max(1.0, float(totals[3]))
    return {
        "accuracy_top1": 100.0 * float(totals[0]) / n,
        "accuracy_top5": 100.0 * float(totals[1]) / n,
        "loss": float(totals[2]) / n,
        "images": float(totals[3]),
        "skipped": float(totals[4]),
    }


class Classification:
    name = "classification"
    metric = Metric("accuracy_top1", "accuracy/top1", "top-1", "top1", "percent", "accuracy")
    extra_metrics: Sequence[str] = ("accuracy_top5",)
    cost_scope: CostScope = "network"
    cost_scopes: Sequence[CostScope] = ("network", "backbone")
    postprocess_modes: Sequence[Postprocess] = ("raw",)

    def build_loaders(
        self,
        dataset: DatasetSpec,
        resolution: tuple[int, int],
        *,
        work_dir: str | Path | None = None,
        seed: int = 0,
    ) -> DataLoaders:
        return build_loaders(dataset, resolution, work_dir=work_dir, seed=seed)

    def build_supernet(
        self,
        space: SearchSpace,
        num_classes: int,
        *,
        activation: str = "relu6",
        dropout: float = 0.2,
        drop_path: float = 0.0,
    ) -> nn.Module:
        from gen5nas.supernet import Supernet

        return Supernet(
            space, num_classes, activation=activation, dropout=dropout, drop_path=drop_path
        )

    def extract(self, supernet: nn.Module, arch: Arch) -> nn.Module:
        from gen5nas.supernet import Supernet, extract_subnet

        assert isinstance(supernet, Supernet)
        return extract_subnet(supernet, arch)

    def ground_truth_loss(self, output: Any, batch: Batch, label_smoothing: float) -> Tensor:
        return F.cross_entropy(output.float(), batch.targets, label_smoothing=label_smoothing)

    def distillation_loss(self, student: Any, teacher: Any, temperature: float) -> Tensor:
        return distillation_loss(student, teacher, temperature)

    def detach(self, output: Any) -> Any:
        return output.detach()

    def evaluate(
        self,
        model: nn.Module,
        loader: Iterable[Batch],
        device: torch.device,
        channels_last: bool = False,
    ) -> dict[str, float]:
        return evaluate_classifier(model, loader, device, channels_last)

    def export_wrapper(self, model: nn.Module, postprocess: Postprocess = "raw") -> nn.Module:
        if postprocess != "raw":
            raise ValueError(f"classification exports raw logits only, not {postprocess!r}")
        return model  # logits out, as the estimator and the card expect

    def postprocess_card(
        self, model: nn.Module, image_hw: tuple[int, int], postprocess: Postprocess = "raw"
    ) -> dict[str, Any]:
        return {
            "mode": "raw",
            "outputs": {
                "output": "(N, num_classes) logits, classes in source.classes order: argmax "
                "for the class, softmax for probabilities"
            },
        }


CLASSIFICATION = register_task(Classification())

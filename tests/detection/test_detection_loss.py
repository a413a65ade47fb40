"""FCOS assignment, the detection loss (finite, gradients everywhere, overfits a batch) and the
distillation loss."""

from __future__ import annotations

import pytest
import torch
from support.detection import synthetic_batch

from gen5nas.detection.levels import point_grid
from gen5nas.detection.loss import (
    assign_targets,
    detection_distillation_loss,
    detection_loss,
)
from gen5nas.detection.model import DetectionSupernet, DetectorRaw
from gen5nas.spec import load_space

torch.set_num_threads(2)

SPACE = load_space("mobilenetv2_tiny_det")


@pytest.fixture()
def net() -> DetectionSupernet:
    torch.manual_seed(0)
    return DetectionSupernet(SPACE, num_classes=3).train()


def test_a_small_box_goes_to_the_finest_level_at_its_centre(net: DetectionSupernet) -> None:
    points, strides = point_grid(net.levels, (64, 64), (64, 64))
    # A 10 px box: its largest distance (< 10 px) is in stride 8's range [0, 16]; of the stride-8
    # points (8 j + 0.5) only (24.5, 24.5) is inside it. The padding row is ignored.
    targets = torch.tensor([[[2.0, 20, 20, 30, 30], [-1, 0, 0, 0, 0]]])
    assigned = assign_targets(targets, points, strides)
    positive = assigned.positive[0]
    assert positive.sum() == 1
    index = int(positive.nonzero()[0, 0])
    assert points[index].tolist() == [24.5, 24.5] and strides[index].tolist() == [8.0, 8.0]
    assert int(assigned.labels[0, index]) == 2
    assert assigned.boxes[0, index].tolist() == [20.0, 20.0, 30.0, 30.0]


def test_a_large_box_goes_to_a_coarser_level_and_the_smaller_box_wins(
    net: DetectionSupernet,
) -> None:
    points, strides = point_grid(net.levels, (64, 64), (64, 64))
    targets = torch.tensor([[[0.0, 4, 4, 60, 60], [1.0, 20, 20, 30, 30]]])
    assigned = assign_targets(targets, points, strides)
    labels = assigned.labels[0]
    assert set(strides[labels == 0, 0].tolist()) <= {16.0, 32.0} and (labels == 0).any()
    # (24.5, 24.5) lies in both boxes but only the small one's range: it keeps the small box
    at = int(((points - torch.tensor([24.5, 24.5])).abs().sum(1) == 0).nonzero()[0, 0])
    assert int(labels[at]) == 1


def test_a_box_narrower_than_the_finest_spacing_still_gets_a_location(
    net: DetectionSupernet,
) -> None:
    # the 48 px subnet fed 64 px images: finest points every 8 * 64 / 48 = 10.7 px, at
    # 0.67, 11.3, 22, 32.7 ...; a 5 px box at 24-29 contains none of them
    points, strides = point_grid(net.levels, (48, 48), (64, 64))
    targets = torch.tensor([[[1.0, 24, 24, 29, 29]]])
    assigned = assign_targets(targets, points, strides)
    (index,) = assigned.positive[0].nonzero()[:, 0].tolist()
    assert strides[index, 0] == strides[:, 0].min()  # the finest level
    nearest = (points - torch.tensor([26.5, 26.5])).abs().amax(1)
    nearest[strides[:, 0] > strides[:, 0].min()] = float("inf")
    assert index == int(nearest.argmin()) and int(assigned.labels[0, index]) == 1


def test_no_boxes_means_all_background(net: DetectionSupernet) -> None:
    points, strides = point_grid(net.levels, (64, 64), (64, 64))
    assert not assign_targets(torch.zeros(2, 0, 5), points, strides).positive.any()
    raw = net(torch.randn(2, 3, 64, 64))
    loss = detection_loss(raw, torch.zeros(2, 0, 5)).detach()
    assert torch.isfinite(loss) and float(loss) > 0


def test_loss_is_finite_with_gradients_to_backbone_neck_and_head(net: DetectionSupernet) -> None:
    batch = synthetic_batch(3, seed=1)
    net.set_min()  # a subnet at 48 px fed 64 px images: targets stay in the fed image's pixels
    loss = detection_loss(net(batch.images), batch.targets)
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in [
        ("stem", net.stem.conv.conv.weight),
        ("neck lateral", net.neck.lateral[0].conv.conv.weight),
        ("neck output", net.neck.output[-1][0].weight),
        ("head cls", net.head.cls_logits.weight),
        ("head box", net.head.box_regression.weight),
        ("head centerness", net.head.centerness.weight),
    ]:
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


def test_loss_decreases_when_overfitting_one_batch(net: DetectionSupernet) -> None:
    batch = synthetic_batch(2, seed=2)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = detection_loss(net(batch.images), batch.targets)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) < sum(losses[:5])


def _perturbed(raw: DetectorRaw, scale: float) -> DetectorRaw:
    g = torch.Generator().manual_seed(3)
    noise = [torch.randn(t.shape, generator=g) * scale for t in raw[:3]]
    return DetectorRaw(
        raw.cls_logits + noise[0],
        raw.box_regression * (1 + noise[1].abs()),
        raw.centerness + noise[2],
        raw.points,
        raw.strides,
    )


def test_distillation_is_zero_for_identical_outputs_and_positive_otherwise(
    net: DetectionSupernet,
) -> None:
    x = synthetic_batch(2, seed=4).images
    with torch.no_grad():
        teacher = net(x)
    assert float(detection_distillation_loss(teacher, teacher, 1.0)) <= 1e-6
    assert float(detection_distillation_loss(teacher, teacher, 2.0)) <= 1e-6
    assert float(detection_distillation_loss(_perturbed(teacher, 0.5), teacher, 1.0)) > 1e-3
    # a student of another resolution (another grid): finite, with gradients
    net.set_min()
    student = net(x)
    loss = detection_distillation_loss(student, teacher, 1.0)
    assert torch.isfinite(loss) and float(loss) > 0
    loss.backward()
    assert float(net.head.cls_logits.weight.grad.abs().sum()) > 0  # type: ignore[union-attr]

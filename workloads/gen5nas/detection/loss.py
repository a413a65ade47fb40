"""FCOS training losses: target assignment, the ground-truth loss, and in-place distillation.

Assignment (FCOS with centre sampling), per image, every quantity in units of the location's
stride (so it holds at any subnet resolution, see :mod:`.levels`): a location is a candidate
for a box when it lies inside the box, within ``center_radius`` strides of its centre, and the
box's size is in the level's range; a location with several candidates takes the smallest box.
The range bounds are ``range_factor`` x the level strides: level l takes boxes whose half
larger side is in [f s_{l-1}, f s_l] (from 0 on the finest level, unbounded on the coarsest).
FCOS's f = 8 (0-64-128-... px at strides 8-16-...) is for 800 px images; at 64 px, strides
8/16/32 give 8x8/4x4/2x2 maps, and f = 2 (0-16-32-inf px) sends the bundled scenes' small
objects (9-19 px) to stride 8 and their main object (36-58 px) to 16 and 32.

Two departures from FCOS, both for maps this small: the range is tested on the box's half
size, not on each location's largest ltrb distance (at 4x4 that leaves a 50 px object one or
two locations, the box test gives it the nine near its centre); and a box no location takes
(narrower than the finest stride's spacing, at a small subnet's resolution) is given the
finest level's location nearest its centre, so that no object is left out of training.

Loss (normalised by the number of positive locations, at least 1; per process, as the rest of
the sandwich step): sigmoid focal loss (alpha 0.25, gamma 2) on the class logits of every
location, GIoU loss on the positives' boxes weighted by their centerness target, and BCE on
the positives' centerness. ``targets`` are the Batch's: (N, K, 5) rows [class, x1, y1, x2, y2]
in input pixels, class -1 for padding.

Distillation (:func:`detection_distillation_loss`): the student matches the largest subnet's
dense output at every location: binary KL on each class probability (temperature T, scaled by
T^2), and, weighted by the teacher's confidence (its largest class probability), GIoU loss to
the teacher's boxes and binary KL on its centerness; normalised by the sum of the weights (a
soft count of the teacher's detections). It is 0 when the student equals the teacher.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from gen5nas.detection.model import DetectorRaw

RANGE_FACTOR = 2.0
CENTER_RADIUS = 1.5
FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0

inf = float("inf")


@dataclass(frozen=True)
class Assignment:
    labels: Tensor  # (N, A) long: the class of each location's box, -1 for background
    boxes: Tensor  # (N, A, 4) its box (x1, y1, x2, y2); meaningless for background

    @property
    def positive(self) -> Tensor:
        return self.labels >= 0


def _level_index(strides: Tensor) -> Tensor:
    """Each location's level (0 = finest), from its stride (A, 2)."""
    level_stride = strides[:, 0].contiguous()
    return torch.searchsorted(torch.unique(level_stride), level_stride)


def level_ranges(strides: Tensor, range_factor: float = RANGE_FACTOR) -> tuple[Tensor, Tensor]:
    """Per location, the (low, high) bounds of its largest ltrb distance, in its own strides."""
    level_stride = strides[:, 0].contiguous()
    distinct = torch.unique(level_stride)  # sorted: finest first
    level = _level_index(strides)
    previous = torch.cat([distinct.new_zeros(1), distinct[:-1]])
    low = range_factor * previous[level] / level_stride
    high = torch.full_like(low, range_factor)
    high[level == distinct.numel() - 1] = float("inf")
    return low, high


def ltrb(points: Tensor, boxes: Tensor) -> Tensor:
    """Distances (..., 4) from points (A, 2) to the sides of boxes (N, K, 4), as (N, A, K, 4)."""
    x = points[None, :, None, 0]
    y = points[None, :, None, 1]
    b = boxes[:, None]
    return torch.stack([x - b[..., 0], y - b[..., 1], b[..., 2] - x, b[..., 3] - y], dim=-1)


@torch.no_grad()
def assign_targets(
    targets: Tensor,
    points: Tensor,
    strides: Tensor,
    range_factor: float = RANGE_FACTOR,
    center_radius: float = CENTER_RADIUS,
) -> Assignment:
    """FCOS labels and boxes for every location (see the module docstring)."""
    n, a = targets.shape[0], points.shape[0]
    labels = torch.full((n, a), -1, dtype=torch.long, device=points.device)
    boxes = torch.zeros(n, a, 4, device=points.device)
    if targets.shape[1] == 0 or n == 0:
        return Assignment(labels, boxes)
    targets = targets.to(points.device, torch.float32)
    gt_class, gt_boxes = targets[..., 0], targets[..., 1:]
    valid = (gt_class >= 0) & (gt_boxes[..., 2] > gt_boxes[..., 0])
    valid &= gt_boxes[..., 3] > gt_boxes[..., 1]
    scale = strides.repeat(1, 2)[None, :, None]  # (1, A, 1, 4): sx, sy, sx, sy
    dist = ltrb(points, gt_boxes) / scale  # (N, A, K, 4) in strides
    inside = dist.amin(-1) > 0
    centre = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2  # (N, K, 2)
    offset = (points[None, :, None] - centre[:, None]).abs() / strides[None, :, None]
    near_centre = (offset < center_radius).all(-1)
    low, high = level_ranges(strides, range_factor)
    half = (gt_boxes[..., 2:] - gt_boxes[..., :2]) / 2  # (N, K, 2)
    largest = (half[:, None] / strides[None, :, None]).amax(-1)  # (N, A, K) in strides
    in_range = (largest >= low[None, :, None]) & (largest <= high[None, :, None])
    candidate = inside & near_centre & in_range & valid[:, None]
    orphan = valid & ~candidate.any(1)  # (N, K): a box smaller than the finest stride's spacing
    if bool(orphan.any()):
        nearest_finest = offset.amax(-1).masked_fill(_level_index(strides)[None, :, None] > 0, inf)
        fallback = torch.zeros_like(candidate)
        fallback.scatter_(1, nearest_finest.argmin(1, keepdim=True), True)
        candidate |= fallback & orphan[:, None]
    area = (gt_boxes[..., 2] - gt_boxes[..., 0]) * (gt_boxes[..., 3] - gt_boxes[..., 1])
    area = area[:, None].expand(n, a, -1).masked_fill(~candidate, inf)
    smallest, index = area.min(-1)  # (N, A)
    positive = torch.isfinite(smallest)
    chosen_class = gt_class.gather(1, index).long()
    labels = torch.where(positive, chosen_class, labels)
    boxes = gt_boxes.gather(1, index[..., None].expand(n, a, 4))
    return Assignment(labels, boxes)


def centerness_target(points: Tensor, boxes: Tensor) -> Tensor:
    """sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)) for points (P, 2), boxes (P, 4)."""
    d = torch.stack(
        [
            points[:, 0] - boxes[:, 0],
            points[:, 1] - boxes[:, 1],
            boxes[:, 2] - points[:, 0],
            boxes[:, 3] - points[:, 1],
        ],
        dim=1,
    ).clamp(min=0)
    lr, tb = d[:, [0, 2]], d[:, [1, 3]]
    ratio = lr.amin(1) / lr.amax(1).clamp(min=1e-6) * tb.amin(1) / tb.amax(1).clamp(min=1e-6)
    return ratio.sqrt()


def decode_boxes(points: Tensor, box_regression: Tensor) -> Tensor:
    """(x1, y1, x2, y2) of ltrb distances (..., 4) from points (..., 2)."""
    return torch.cat([points - box_regression[..., :2], points + box_regression[..., 2:]], -1)


def detection_loss(
    raw: DetectorRaw,
    targets: Tensor,
    points: Tensor | None = None,
    strides: Tensor | None = None,
) -> Tensor:
    """Focal + centerness-weighted GIoU + centerness BCE, over the positives (module docstring).

    ``points``/``strides`` default to the raw output's own."""
    points = raw.points if points is None else points
    strides = raw.strides if strides is None else strides
    cls = raw.cls_logits.float()
    box = raw.box_regression.float()
    ctr = raw.centerness.float()[..., 0]
    assigned = assign_targets(targets, points, strides)
    positive = assigned.positive
    num_pos = max(1.0, float(positive.sum()))
    onehot = torch.zeros_like(cls)
    index = positive.nonzero(as_tuple=True)
    onehot[(*index, assigned.labels[index])] = 1.0
    cls_loss = sigmoid_focal_loss(cls, onehot, FOCAL_ALPHA, FOCAL_GAMMA, reduction="sum")
    pos_points = points.expand(cls.shape[0], -1, -1)[positive]
    pos_boxes = assigned.boxes[positive]
    ctr_target = centerness_target(pos_points, pos_boxes)
    giou = generalized_box_iou_loss(
        decode_boxes(pos_points, box[positive]), pos_boxes, reduction="none"
    )
    box_loss = (giou * ctr_target).sum() / ctr_target.sum().clamp(min=1e-6)
    ctr_loss = F.binary_cross_entropy_with_logits(ctr[positive], ctr_target, reduction="sum")
    return cls_loss / num_pos + box_loss + ctr_loss / num_pos


def binary_kl(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Elementwise KL(Bernoulli(sigmoid(teacher)) || Bernoulli(sigmoid(student)))."""
    p = torch.sigmoid(teacher_logits)
    return p * (F.logsigmoid(teacher_logits) - F.logsigmoid(student_logits)) + (1 - p) * (
        F.logsigmoid(-teacher_logits) - F.logsigmoid(-student_logits)
    )


def detection_distillation_loss(
    student: DetectorRaw, teacher: DetectorRaw, temperature: float = 1.0
) -> Tensor:
    """The student's distance to the (detached) teacher's dense output (module docstring).

    Student and teacher come from the same images, so their locations match whenever their
    resolutions do; when they differ, the teacher is resampled at the student's points (its
    nearest location of the same level): every subnet is distilled on its own grid."""
    teacher = _on_student_grid(student, teacher)
    t = temperature
    s_cls, t_cls = student.cls_logits.float(), teacher.cls_logits.float().detach()
    weight = torch.sigmoid(t_cls).amax(-1)  # (N, A): how much the teacher sees something there
    norm = weight.sum().clamp(min=1.0)
    cls_loss = binary_kl(s_cls / t, t_cls / t).sum() * (t * t)
    points = student.points[None]
    s_boxes = decode_boxes(points, student.box_regression.float())
    t_boxes = decode_boxes(teacher.points[None], teacher.box_regression.float().detach())
    box_loss = (generalized_box_iou_loss(s_boxes, t_boxes, reduction="none") * weight).sum()
    ctr = binary_kl(student.centerness.float()[..., 0], teacher.centerness.float()[..., 0])
    ctr_loss = (ctr * weight).sum()
    return (cls_loss + box_loss + ctr_loss) / norm


def _on_student_grid(student: DetectorRaw, teacher: DetectorRaw) -> DetectorRaw:
    if teacher.points.shape == student.points.shape and torch.equal(teacher.points, student.points):
        return teacher
    # Nearest teacher location of the same level (same stride index among the distinct ones).
    dist = torch.cdist(student.points, teacher.points)
    same_level = _level_index(student.strides)[:, None] == _level_index(teacher.strides)[None, :]
    dist = dist.masked_fill(~same_level, float("inf"))
    nearest = dist.argmin(1)
    return DetectorRaw(
        teacher.cls_logits[:, nearest],
        teacher.box_regression[:, nearest],
        teacher.centerness[:, nearest],
        teacher.points[nearest],
        teacher.strides[nearest],
    )

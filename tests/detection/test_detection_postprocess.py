"""decode_detections on a hand-made raw output."""

from __future__ import annotations

import torch

from gen5nas.detection.model import DetectorRaw
from gen5nas.detection.postprocess import decode_detections

HIGH, LOW = 6.0, -8.0


def test_decode_gives_the_expected_boxes() -> None:
    points = torch.tensor([[10.0, 20.0], [11.0, 20.0], [40.0, 40.0], [60.0, 5.0]])
    strides = torch.full((4, 2), 8.0)
    cls = torch.full((1, 4, 2), LOW)
    cls[0, 0, 1] = HIGH  # the expected box: class 1 at point 0
    cls[0, 1, 1] = HIGH - 1  # the same box one pixel off, lower score: NMS removes it
    cls[0, 1, 0] = HIGH - 1  # ... but as class 0 it is kept (NMS is per class)
    cls[0, 3, 0] = HIGH  # a box past the image's right edge: clipped
    box = torch.tensor([[[2.0, 3.0, 4.0, 5.0], [2.0, 3.0, 4.0, 5.0], [1, 1, 1, 1], [3, 3, 9, 3]]])
    ctr = torch.full((1, 4, 1), HIGH)
    raw = DetectorRaw(cls, box, ctr, points, strides)
    (out,) = decode_detections(raw, points, strides, (48, 64), score_threshold=0.3)
    assert out["labels"].tolist() == [1, 0, 0]  # best first; point 2 is under the threshold
    assert out["boxes"][0].tolist() == [8.0, 17.0, 14.0, 25.0]
    assert out["boxes"][1].tolist() == [57.0, 2.0, 64.0, 8.0]  # x2 = 69 clipped to the width
    assert out["boxes"][2].tolist() == [9.0, 17.0, 15.0, 25.0]
    expected = torch.sqrt(torch.sigmoid(torch.tensor(HIGH)) ** 2)
    assert torch.allclose(out["scores"][0], expected)
    assert out["scores"][0] > out["scores"][2]


def test_decode_takes_an_exported_model_s_three_tensors_and_caps_detections() -> None:
    a = 20
    points = torch.stack([torch.arange(a) * 10.0 + 5, torch.full((a,), 5.0)], 1)
    cls = torch.full((2, a, 1), HIGH)
    box = torch.full((2, a, 4), 2.0)
    ctr = torch.full((2, a, 1), HIGH)
    outs = decode_detections((cls, box, ctr), points, None, (100, 200), max_detections=7)
    assert [len(o["boxes"]) for o in outs] == [7, 7]  # disjoint boxes: only the cap applies

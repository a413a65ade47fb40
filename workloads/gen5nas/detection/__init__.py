"""Object detection on the elastic MBConv backbone: an FCOS-style detector whose backbone is
searched and whose neck and head are fixed.

- :mod:`.levels`: which stages feed the neck (the last stage of each of the last three
  distinct output strides) and where each output sits in the image (points and strides);
- :mod:`.neck`: the FPN (elastic 1x1 laterals, so any arch's stage widths fit);
- :mod:`.head`: the shared FCOS head (class logits, ltrb regression, centerness);
- :mod:`.model`: :class:`~gen5nas.detection.model.DetectionSupernet` and the raw output,
  :class:`~gen5nas.detection.model.DetectorRaw`;
- :mod:`.static` and :mod:`.extract`: the static detector of one arch
  (:func:`~gen5nas.detection.extract.extract_detector`);
- :mod:`.loss`: FCOS target assignment, the ground-truth loss and the distillation loss;
- :mod:`.postprocess`: raw outputs to boxes (score threshold, NMS);
- :mod:`.coco_eval`: COCO result dicts and COCOeval's bbox metrics.

The task that ties them to the steps is :mod:`gen5nas.tasks.detection`.
"""

"""The tasks a supernet is trained, searched and exported for, behind one small interface.

- :mod:`gen5nas.tasks.base`: the :class:`~gen5nas.tasks.base.Task` protocol (datasets and
  collate, the head on the elastic backbone, the sandwich step's ground-truth and distillation
  losses, the evaluator and its metric name, the export wrapper, the subgraph the estimator
  costs) and the registry, :func:`~gen5nas.tasks.base.get_task`, keyed by the specs' ``task``.
- :mod:`gen5nas.tasks.classification`: image classification (``accuracy/top1``).
- :mod:`gen5nas.tasks.detection`: object detection (``coco/bbox_mAP``).

The steps that use a task: :mod:`gen5nas.train.sandwich` (the sandwich step),
:mod:`gen5nas.train.trainer` (the loop), :mod:`gen5nas.train.evaluate` (the validators),
:mod:`gen5nas.search.evaluate` (scoring a trial), :mod:`gen5nas.export` and
:mod:`gen5nas.pipeline`. Import the submodules; this package imports no torch.
"""

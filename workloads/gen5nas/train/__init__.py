"""Supernet training, and the pieces the search and export steps reuse.

- :mod:`~gen5nas.train.job`: the SupernetTraining step (assembly only);
- :mod:`~gen5nas.train.sandwich`: the sandwich step (BigNAS: the max subnet on the ground
  truth, the min and random subnets by in-place distillation; the losses are the task's,
  :mod:`gen5nas.tasks`) and the plain step of retraining;
- :mod:`~gen5nas.train.trainer`: the loop (DDP, optimizer and schedule, validation, logging);
  :mod:`~gen5nas.train.resume` finds the point it resumes from on every rank;
- :mod:`~gen5nas.train.checkpoint`: the checkpoint format, the pointer, ``load_supernet``;
  :mod:`~gen5nas.train.checkpoint_store`: rotation and the best file of a work dir;
- :mod:`~gen5nas.train.evaluate`: the validators (min/max subnet, static model) on the task's
  evaluator; :mod:`~gen5nas.train.bn_calibration`: BN recalibration;
- :mod:`~gen5nas.train.optim`, :mod:`~gen5nas.train.distributed`,
  :mod:`~gen5nas.train.progress_report` (progress for ``kubectl get``).

The run's log file, config copies and ``metrics.jsonl`` are :class:`gen5nas.run_outputs.RunOutputs`.
Import the submodules; this package imports no torch."""

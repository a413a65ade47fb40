"""The search step: training-free subnet search over a trained supernet (Optuna NSGA-III).

Where each concern of a search lives:

- the search loop: ``job`` (``run_search``: check, search, write the outputs, in that order),
  ``runner`` (one worker's trial loop), ``settings`` (``SearchSettings``, what a search is asked);
- the supernet searched: ``checkpoint_space`` (the checkpoint's meta and search space);
- the study: ``study`` (storage, opening a study with its identity), ``sampler`` (which Optuna
  sampler), ``encoding`` (arch <-> Optuna params);
- the cost function: ``cost`` (estimator servers, client, the ``CostFn``), ``evaluate``
  (accuracy + hardware cost of one arch through the task's metric, and the evaluator's
  calibration and validation batches);
- the workers: ``workers`` (one worker's set-up, the worker processes and their start barrier);
- the outputs: ``results`` (trials -> records), ``pareto`` (non-dominated set, hypervolume),
  ``outputs`` (the seed's files, written from the study), ``log_dir`` (the log folder);
- the command: ``cli`` (``gen5nas search``).

Nothing heavy is imported here: the CLI's ``--help`` stays instant.
"""

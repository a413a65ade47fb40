"""The search step: training-free subnet search over a trained supernet (Optuna NSGA-III).

Modules, one responsibility each: ``encoding`` (arch <-> Optuna params), ``sampler`` (which
Optuna sampler), ``study`` (storage and study), ``evaluate`` (accuracy + hardware cost of one
arch), ``pareto`` (non-dominated set, hypervolume), ``results`` (trials -> records),
``outputs`` (the seed's files), ``runner`` (a worker's loop), ``cli`` (``gen5nas search``).
Nothing heavy is imported here: the CLI's ``--help`` stays instant.
"""

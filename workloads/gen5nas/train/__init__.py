"""Supernet training (BigNAS sandwich rule with in-place distillation), reusable pieces for the
search and export steps (BN recalibration, checkpoints, ``load_supernet``), and the generic
training loop the retrain step shares. Import the submodules; this package imports no torch."""

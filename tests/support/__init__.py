"""Helpers the tests share, one module per package area (``search``, ``train``, ``export``,
``estimator``, ``metrics``, ``pipeline``, ``operator_study``, ``operator_e2e``); fixtures live in each folder's
``conftest.py`` and the real external parts in ``realparts``."""

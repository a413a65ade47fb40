"""Export tests' fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(single_thread: None) -> None:
    """Every export test on one intra-op thread (the shared ``single_thread``)."""

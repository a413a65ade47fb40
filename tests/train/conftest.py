"""Training tests' fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(single_thread: None) -> None:
    """Every training test on one intra-op thread (the shared ``single_thread``); a test that
    wants two sets them itself and the fixture restores the count after it."""

"""Export tests' fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """One intra-op thread: these tiny models gain nothing from two, and the 2 CPU cores are
    shared with other test processes (oversubscribed, two threads run ~10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)

"""Torch's intra-op thread count for tests on the 2 shared CPU cores."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread, restored on exit: tiny models gain nothing from two, and the cores are
    shared with the real parts' server processes (oversubscribed, two threads run ~10x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)

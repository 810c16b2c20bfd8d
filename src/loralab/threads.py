"""Scoped torch thread count.

Small matrices (d ≤ ~1024) lose more to OpenMP thread hand-offs than they gain from a
second core, and on a busy machine a spinning second thread can make a 30 ms SVD take
over half a second. :func:`torch_threads` sets the intra-op thread count for a block and
restores it afterwards (the setting is process-wide while the block runs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["SMALL_NUMEL", "torch_threads"]

# Up to this many matrix entries (512 × 512) one thread is as fast as two, and robust to load.
SMALL_NUMEL = 512 * 512


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``; ``None`` leaves the count alone."""
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)

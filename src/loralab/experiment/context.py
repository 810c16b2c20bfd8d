"""What every step of a run needs besides the config: :class:`RunContext`.

The experiment's functions take ``(what, ctx)``: the :class:`ExperimentConfig` says what to
compute, the context where and how (the :class:`RunOptions`, the resolved device, the
process group, the progress callback, the matmul peak a run divides by), so no function
threads ``device=``, ``dist=`` and ``progress=`` through its callees one by one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from ..lm.dist import DistContext
from ..results.finetune_config import RunOptions

__all__ = ["Progress", "RunContext"]

Progress = Callable[[str, int], None]   # (what is running, optimizer steps just completed)


@dataclass(frozen=True)
class RunContext:
    """Where and how the experiment runs.

    Attributes:
        options: the user's :class:`RunOptions` (device asked, cache, jobs, threads, ...).
        device: the device resolved from ``options.device`` for this process.
        dist: the process group (:class:`~loralab.lm.dist.DistContext`; one process: the
            default).
        progress: ``progress(label, steps)`` as optimizer steps complete, or ``None``.
        peak_flops: the matmul peak (FLOP/s) a run's utilisation divides by; ``None``: each
            training measures its own (:func:`loralab.lm.train.train`).
    """

    options: RunOptions = field(default_factory=RunOptions)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dist: DistContext = field(default_factory=DistContext)
    progress: Progress | None = None
    peak_flops: float | None = None

    def tick(self, label: str, steps: int) -> None:
        """Report ``steps`` finished optimizer steps of ``label`` (nothing without a
        callback)."""
        if self.progress is not None:
            self.progress(label, steps)

    def with_progress(self, progress: Progress | None) -> RunContext:
        """The same context with another progress callback (a worker's, or none)."""
        return replace(self, progress=progress)

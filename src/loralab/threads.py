"""Thread counts: a scoped setting, and the count a command picks when given none.

Small matrices (d ≤ ~1024) lose more to OpenMP thread hand-offs than they gain from a
second core, and on a busy machine a spinning second thread can make a 30 ms SVD take
over half a second. :func:`torch_threads` sets the intra-op thread count for a block and
restores it afterwards (the setting is process-wide while the block runs). This module is
the one home of the policy; the commands call it and hold no rule of their own:

* :func:`small_matrix_threads`: one thread for a matrix of at most :data:`SMALL_NUMEL`
  entries, else torch's count (``loralab demo``, ``loralab fit``);
* :func:`resolve_threads` / :func:`set_threads`: what ``--threads N`` means, ``N`` itself
  when ``N ≥ 1``; for ``N = 0`` (the default) the default rule below when the model's largest
  matrix is known before the work (``loralab report``: the preset's model), else the free
  cores (:func:`free_cores`) shared equally by the processes of this machine
  (``loralab finetune``: pretraining and runs one after another; ``torchrun`` processes
  split them). Runs side by side get their count from :func:`run_layout`.

**The default rule** (:func:`default_threads`): when the largest weight matrix of the model
has at most :data:`SMALL_NUMEL` entries (the tiny LMs of the fine-tuning presets: d_ff·d =
512·128 at the default preset), one thread. A tiny model's step is hundreds of small GEMMs
and elementwise ops of tens to hundreds of microseconds: a second thread halves little of
that, and on a busy machine each OpenMP fork/join waits for a core another job holds (the
quick preset took 551 s on two threads against 46 s on one, under a load average of 3 on 2
cores). Otherwise torch's count (one per core), less the cores other jobs keep busy:
``round(cores - load)`` with ``load`` the 1-minute load average read before the work starts,
at least one. Under that same load a 1024² matmul ran at 45 GFLOP/s on two threads and 57 on
one, so even large matrices gain nothing from a core that is not free. The thread count
changes results only by float rounding (the order of partial sums).
Measured: ``docs/benchmarks.md``, section "Peak, utilisation and threads".
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Protocol

from .errors import LoralabError

__all__ = ["SMALL_NUMEL", "cores", "default_threads", "free_cores", "largest_matrix_numel",
           "resolve_threads", "run_layout", "set_threads", "small_matrix_threads",
           "torch_threads"]

# Up to this many matrix entries (512 × 512) one thread is as fast as two, and robust to load.
SMALL_NUMEL = 512 * 512


class _HasParameters(Protocol):
    def parameters(self) -> Iterable: ...


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


def default_threads(largest_matrix_numel: int, available: int | None = None,
                    load: float | None = None) -> int:
    """The default rule: the thread count for a model whose largest matrix has
    ``largest_matrix_numel`` entries, when the user gives none.

    ``1`` when ``largest_matrix_numel <= SMALL_NUMEL`` (a tiny model: per-op overhead, not
    FLOPs, sets its speed, and one thread is never slowed by a busy machine). Otherwise
    ``available`` (default: ``torch.get_num_threads()`` now, torch's default of one per core
    unless something in the process changed it) less the cores other jobs hold:
    ``max(1, min(available, round(available - load)))``, with ``load`` the 1-minute load
    average (default: ``os.getloadavg()[0]`` now, 0 where the platform has none).
    """
    if largest_matrix_numel < 0:
        raise LoralabError(f"largest_matrix_numel={largest_matrix_numel} is not allowed; "
                           "it must be >= 0")
    if largest_matrix_numel <= SMALL_NUMEL:
        return 1
    if available is None:
        import torch

        available = torch.get_num_threads()
    if load is None:
        load = _load_average()
    return max(1, min(available, round(available - max(0.0, load))))


def cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                     # macOS, Windows
        return max(1, os.cpu_count() or 1)


def free_cores(available: int | None = None, load: float | None = None) -> int:
    """Cores no other job keeps busy: ``max(1, min(available, round(available - load)))``
    with ``available`` (default :func:`cores`) and ``load`` the 1-minute load average
    (default: now)."""
    available = cores() if available is None else available
    load = _load_average() if load is None else load
    return max(1, min(available, round(available - max(0.0, load))))


def run_layout(n_runs: int, *, small: bool, jobs: int = 0, threads: int = 0,
               free: int | None = None, available: int | None = None) -> tuple[int, int]:
    """``(processes, threads each)`` for ``n_runs`` independent training runs.

    ``jobs`` / ``threads``: what the user asked for (0: choose). Given ``jobs``, that many
    processes (at most one per run), each with ``threads`` or an equal share of the ``free``
    cores (:func:`free_cores`). Otherwise a ``small`` model gets one process per core
    (``available``, default :func:`cores`), each with ``threads`` or one thread: per-op
    overhead sets a tiny model's speed, two one-thread processes train two runs in the time
    one two-thread process trains 1.2 of them, and independent one-thread processes never
    wait for each other, so on a busy machine they share the cores with the other jobs
    instead of stalling at every OpenMP join as threads do (``docs/benchmarks.md``). A large
    model: one process with ``threads`` or every free core (a second copy of a large model
    costs memory, and its big GEMMs use the threads well).
    """
    for name, v in (("n_runs", n_runs), ("jobs", jobs), ("threads", threads)):
        if v < 0:
            raise LoralabError(f"{name}={v} is not allowed; it must be >= 0")
    if small and not jobs:
        per = threads or 1
        available = cores() if available is None else max(1, available)
        return max(1, min(n_runs, available // per)), per
    free = free_cores() if free is None else max(1, free)
    if jobs:
        jobs = max(1, min(jobs, n_runs))
        return jobs, threads or max(1, free // jobs)
    return 1, threads or free


def _load_average() -> float:
    """The 1-minute load average (runnable processes), 0 where the OS does not report it."""
    import os

    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def largest_matrix_numel(model: _HasParameters) -> int:
    """Entries of the largest parameter with at least two dimensions (0 if none): the
    size :func:`default_threads` looks at (a weight matrix, an embedding table)."""
    return max((p.numel() for p in model.parameters() if p.dim() >= 2), default=0)


def small_matrix_threads(numel: int) -> int | None:
    """``1`` for a matrix of at most :data:`SMALL_NUMEL` entries (its ops are too small to
    split across threads), else ``None`` (leave torch's count): the argument of
    :func:`torch_threads` around a small analysis."""
    return 1 if numel <= SMALL_NUMEL else None


def resolve_threads(requested: int, largest_matrix_numel: int | None = None, *,
                    processes: int = 1) -> int:
    """What ``--threads requested`` means: ``requested`` when it is ``≥ 1``. For ``0``:
    :func:`default_threads` of ``largest_matrix_numel`` when the model is known, else the
    free cores shared by the ``processes`` on this machine,
    ``max(1, free_cores() // processes)``."""
    if requested < 0:
        raise LoralabError(f"requested={requested} is not allowed; give 0 (the default rule) "
                           "or a count >= 1")
    if requested:
        return requested
    if largest_matrix_numel is not None:
        return default_threads(largest_matrix_numel)
    return max(1, free_cores() // max(1, processes))


def set_threads(requested: int, largest_matrix_numel: int | None = None, *,
                processes: int = 1) -> int:
    """``torch.set_num_threads(resolve_threads(...))`` for the rest of the process (see
    :func:`resolve_threads`); return the count now set."""
    import torch

    n = resolve_threads(requested, largest_matrix_numel, processes=processes)
    torch.set_num_threads(n)
    return n

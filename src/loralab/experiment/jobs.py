"""Independent runs side by side: one process per free core (``finetune --jobs``).

The runs of a sweep share only the base and the data, so they can train at the same time on
different cores. At the default preset on a quiet 2-core machine one process on one thread
takes 58.6 ms a full step, two such processes at once 58.6 and 58.5 ms (no contention), and
one process on two threads 35.7 ms: two one-thread processes do 2 runs in the time one
two-thread process does 1.2. On a 2-vCPU AMD EPYC VM: 101.5 ms alone, 116.6 and 113.4 ms two
at once, 84.6 ms on two threads (1.77 × against 1.20 ×; ``docs/benchmarks.md``, "Where the
default preset's time goes").

How (:func:`run_side_by_side`):

* the workers are ``fork`` s of this process (Linux), so each starts with the imports, the
  base and the data in memory: nothing is pickled or loaded again;
* workers and the parent take items from one shared counter over a fixed order (the most
  expensive first, so the last one to finish is a short one) and run each with the same
  function a sequential sweep uses (the driver's: train the run and leave it in the resume
  folder as ``<label>.done.safetensors``); the parent then restores every run from its file
  in plan order. At the same thread count a run's numbers are bitwise those of the
  sequential sweep (the same kernels, the sums in the same order): the tests compare them;
* progress comes back through one pipe per worker (``(label, steps)``) and the parent's bar
  advances for all of them;
* each worker runs in its own process group, so a Ctrl-C at the terminal reaches the parent
  only, which passes exactly one SIGINT to each live worker: each saves its run's checkpoint
  (a second SIGINT would stop it without one), and the same command resumes them all;
* a worker's :class:`~loralab.errors.LoralabError` (a diverged run, say) stops the handing
  out of runs; the parent finishes its own, waits for the others and raises it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar

from ..errors import LoralabError
from ..threads import torch_threads
from .context import Progress

__all__ = ["at_once", "can_fork", "run_side_by_side"]

T = TypeVar("T")
Work = Callable[[T, Progress | None], None]


def can_fork() -> bool:
    """Whether runs can go side by side here: ``fork`` exists and is safe (Linux)."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def _take(counter: Any, order: Sequence[int]) -> int | None:
    """The next item index in ``order`` (shared by every process), or ``None`` when done."""
    with counter.get_lock():
        k = counter.value
        if k >= len(order):
            return None
        counter.value = k + 1
    return order[k]


def _stop(counter: Any, n: int) -> None:
    """Hand out no more items."""
    with counter.get_lock():
        counter.value = n


def _worker(items: Sequence[T], order: Sequence[int], counter: Any, work: Work,
            conn: Connection, threads: int) -> None:
    """A worker's life: its own process group, ``threads`` threads, items until none is left;
    every outcome goes to the parent through ``conn``."""
    os.setpgid(0, 0)                             # Ctrl-C at the terminal: the parent only
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # may write to the terminal from the back
    import torch

    torch.set_num_threads(threads)
    try:
        while (i := _take(counter, order)) is not None:
            work(items[i], lambda label, n: conn.send(("step", label, n)))
            conn.send(("done", i, None))
    except KeyboardInterrupt as exc:             # TrainingInterrupted is one
        conn.send(("interrupted", getattr(exc, "checkpoint", None), None))
    except LoralabError as exc:
        conn.send(("error", str(exc), None))
    except BaseException:                        # noqa: BLE001 - a bug: pass it on whole
        conn.send(("crash", traceback.format_exc(), None))
    finally:
        conn.close()


class _Pool:
    """The parent's side: the workers, their pipes, and what they reported."""

    def __init__(self, procs: list[Any], conns: list[Connection], progress: Progress | None,
                 stop: Callable[[], None]) -> None:
        self.procs, self.live, self.progress, self.stop = procs, list(conns), progress, stop
        self.errors: list[str] = []
        self.crashes: list[str] = []

    def _handle(self, conn: Connection) -> None:
        try:
            kind, what, n = conn.recv()
        except (EOFError, OSError):              # the worker ended (or died)
            self.live.remove(conn)
            return
        if kind == "step" and self.progress is not None:
            self.progress(what, n)
        elif kind in ("error", "crash"):
            (self.errors if kind == "error" else self.crashes).append(what)
            self.stop()                          # hand out no more items

    def drain(self) -> None:
        """Handle whatever the workers sent so far, without waiting."""
        for conn in wait(self.live, timeout=0):
            self._handle(conn)

    def progress_and_drain(self, label: str, n: int) -> None:
        """The parent's own progress callback: its steps, then the workers' news."""
        if self.progress is not None:
            self.progress(label, n)
        self.drain()

    def wait_all(self) -> None:
        """Handle messages until every worker has ended, then reap them."""
        while self.live:
            for conn in wait(self.live, timeout=1.0):
                self._handle(conn)
        for p in self.procs:
            p.join()

    def interrupt(self) -> None:
        """One SIGINT to each live worker (each saves its checkpoint), then wait for all."""
        for p in self.procs:
            if p.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGINT)
        self.wait_all()


def run_side_by_side(items: Sequence[T], work: Work, *, jobs: int, threads: int,
                     progress: Progress | None = None,
                     cost: Callable[[T], float] | None = None) -> None:
    """``work(item, progress)`` for every item, ``jobs`` processes at a time (this one
    included), each with ``threads`` torch threads; the largest ``cost`` first.

    ``work`` must leave its result where the caller finds it afterwards (a file): nothing
    comes back from a worker but progress, errors and interruptions. With ``jobs <= 1``, one
    item, or no ``fork`` (:func:`can_fork`) the items run here one after another.
    Raises the first worker's :class:`~loralab.errors.LoralabError`, or ``RuntimeError``
    with a worker's traceback; a Ctrl-C stops every worker at the end of its step (each
    saves its checkpoint) and is raised again here.
    """
    order = sorted(range(len(items)), key=lambda i: -cost(items[i])) if cost else \
        list(range(len(items)))
    if jobs <= 1 or len(items) <= 1 or not can_fork():
        for i in order:
            work(items[i], progress)
        return
    import torch

    ctx = multiprocessing.get_context("fork")
    counter = ctx.Value("i", 0)
    procs, conns = [], []
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for _ in range(min(jobs, len(items)) - 1):
            mine, theirs = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_worker, args=(items, order, counter, work, theirs, threads),
                            daemon=True)
            p.start()
            theirs.close()
            procs.append(p)
            conns.append(mine)
        pool = _Pool(procs, conns, progress, lambda: _stop(counter, len(order)))
        try:
            while not pool.errors and not pool.crashes and \
                    (i := _take(counter, order)) is not None:
                work(items[i], pool.progress_and_drain)
                pool.drain()
            pool.wait_all()
        except BaseException:
            pool.interrupt()
            raise
    finally:
        torch.set_num_threads(before)
    if pool.crashes:
        raise RuntimeError("a side-by-side worker failed:\n" + pool.crashes[0])
    if pool.errors:
        raise LoralabError(pool.errors[0])


def at_once(fn: Callable[[], float], *, jobs: int, threads: int) -> list[float]:
    """``fn()`` in ``jobs`` processes at the same moment (this one included, ``threads``
    torch threads each; they meet at a barrier first): each one's result.

    What the driver measures the matmul peak with, so that a run's utilisation divides by
    the peak one process gets while the others run too, not by a peak taken alone (on a
    2-core VM: 94 GFLOP/s alone, about 0.9 × that each with two at once). With ``jobs <= 1``
    or no ``fork``, one call here.
    """
    if jobs <= 1 or not can_fork():
        with torch_threads(threads):
            return [fn()]
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(jobs, timeout=120)
    out = ctx.Array("d", jobs)

    def work(i: int, _progress: Progress | None) -> None:
        barrier.wait()                    # every process holds one item: none takes two
        out[i] = fn()

    run_side_by_side(list(range(jobs)), work, jobs=jobs, threads=threads)
    return list(out)

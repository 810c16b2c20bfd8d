"""The machine's matmul peak, measured now: the denominator of every utilisation figure.

A "peak" typed into the code comes from another day, another load and maybe another thread
count, so a utilisation computed against it is not comparable from run to run (the figure
once typed into loralab for the reference machine was 1.6 times what that machine measured
on two threads, and 3.1 times its one-thread peak, on the same day).
:func:`measure_matmul_peak` times a square ``(n, n) @ (n, n)`` matmul, ``2·n³`` FLOPs, at the
*current* thread count and keeps the best of ``repeats`` samples: the fastest this machine
multiplies matrices right now, which is what a training step's GEMMs could reach at best.

The result is cached per ``(threads, device, dtype, n)`` for the life of the process, so
every run of an experiment divides by the same number and only the first pays (~0.3 s on a
2-core CPU at n = 1024). ``refresh=True`` measures again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch.nn import functional as F

from .errors import LoralabError

__all__ = ["PeakKey", "default_n", "measure_matmul_peak", "peak_cache"]


class PeakKey(NamedTuple):
    """What a measured peak depends on (the cache key)."""

    threads: int
    device: str
    dtype: str
    n: int


_CACHE: dict[PeakKey, float] = {}
_AUTO_N: dict[PeakKey, int] = {}          # n=None: the side chosen, keyed with n = 0
_MIN_SAMPLE_S = 0.01          # one timed sample runs at least this long (launch overhead)
_MAX_PRODUCT_S = 0.1          # n=None on a CPU: shrink n until one product takes about this


def default_n(device: torch.device | str) -> int:
    """The matrix side used when none is given: 1024 on CPU (large enough for MKL's best
    blocking, small enough to take milliseconds), 8192 on CUDA (a GPU needs large tiles)."""
    return 8192 if torch.device(device).type == "cuda" else 1024


def _auto_n(dtype: torch.dtype, device: torch.device) -> int:
    """:func:`default_n`, made smaller on a CPU where one product would take over
    ``_MAX_PRODUCT_S`` (bf16 on a CPU without bf16 units: 3.5 s at n = 1024), judged from a
    256-side probe; never below 256."""
    n = default_n(device)
    if device.type != "cpu":
        return n
    a = torch.ones(256, 256, dtype=dtype)
    probe = min(_time(fn, device, 1) for fn in _kernels(a, a) for _ in range(2))  # 1st: warm
    rate = 2.0 * 256**3 / max(probe, 1e-9)
    while n > 256 and 2.0 * n**3 / rate > _MAX_PRODUCT_S:
        n //= 2
    return n


def _key(n: int, dtype: torch.dtype, device: torch.device) -> PeakKey:
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return PeakKey(torch.get_num_threads(), str(device), str(dtype).removeprefix("torch."), n)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _kernels(a: torch.Tensor, b: torch.Tensor) -> list[Callable[[], object]]:
    """Two ways to run the product: ``matmul`` into a preallocated output, and
    ``F.linear`` (``a @ bᵀ``, what a training step calls; on a CPU its bf16 path is
    oneDNN's, 4.5 × faster here than ``matmul``'s)."""
    out = torch.empty(a.shape[0], b.shape[1], device=a.device, dtype=a.dtype)
    return [lambda: torch.matmul(a, b, out=out), lambda: F.linear(a, b)]


def _time(fn: Callable[[], object], device: torch.device, inner: int) -> float:
    """Seconds for ``inner`` back-to-back calls of ``fn``."""
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    _sync(device)
    return time.perf_counter() - t0


def measure_matmul_peak(n: int | None = None, repeats: int = 10,
                        dtype: torch.dtype = torch.float32,
                        device: torch.device | str = "cpu", *, refresh: bool = False) -> float:
    """FLOP/s of ``(n, n) @ (n, n)`` in ``dtype`` on ``device`` at the current thread count.

    ``2·n³ / t`` for the fastest of ``repeats`` samples (after a warm-up), with the faster
    of ``torch.matmul`` and ``F.linear`` (the same on CUDA and for fp32; for bf16 on a CPU
    they take different kernels); a sample runs enough back-to-back products to last
    ≥ 10 ms, so a GPU's launch latency is amortised.
    ``n=None`` is :func:`default_n` (1024 on CPU, 8192 on CUDA), halved on a CPU while one
    product would take over 0.1 s (bf16 on a CPU without bf16 units), so the measurement
    stays well under a second (the side chosen is remembered, and is the key's ``n``).
    Cached per ``(torch.get_num_threads(), device, dtype, n)``; ``refresh=True`` measures
    again.
    """
    device = torch.device(device)
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise LoralabError(f"n={n!r} is not allowed; the matrix side must be an integer >= 1")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise LoralabError(f"repeats={repeats!r} is not allowed; it must be an integer >= 1")
    if n is None:
        auto = _key(0, dtype, device)
        if refresh or auto not in _AUTO_N:
            _AUTO_N[auto] = _auto_n(dtype, device)
        n = _AUTO_N[auto]
    key = _key(n, dtype, device)
    if not refresh and key in _CACHE:
        return _CACHE[key]
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    calls = {fn: min(_time(fn, device, 1) for _ in range(2)) for fn in _kernels(a, b)}
    fn, first = min(calls.items(), key=lambda kv: kv[1])            # warm-up, the faster one
    inner = max(1, math.ceil(_MIN_SAMPLE_S / max(first, 1e-9)))
    best = min(_time(fn, device, inner) for _ in range(repeats)) / inner
    flops = 2.0 * n**3 / best
    _CACHE[key] = flops
    return flops


def peak_cache() -> dict[PeakKey, float]:
    """A copy of the peaks measured so far in this process, by key."""
    return dict(_CACHE)

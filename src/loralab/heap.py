"""Keep freed activations in the process's heap instead of handing them back to the kernel.

A training step allocates the same tensors every step (the tiny LM's default preset: about
33 MB of activations and gradients in blocks of 0.1–2 MB) and frees them at its end. glibc's
``malloc`` returns the free top of its heap to the kernel once it exceeds a *trim threshold*
(dynamic: twice the largest block it has mapped so far, a few MB here), so the next step
touches fresh pages again: 2,400–3,200 page faults a step, 4.6–5.4 ms of system time in a
90 ms step on one core of a 2-core VM (``docs/benchmarks.md``, "Where the default preset's
time goes"). :func:`keep_freed_memory` raises the trim threshold to 256 MiB and fixes the
size above which a block gets its own mapping at 32 MiB (glibc's maximum), so the freed
blocks are reused: no faults, no system time, after the first step.

It changes no number (the same kernels on the same values), only where the bytes come from.
The cost is that up to 256 MiB of freed memory stays with the process until it exits; blocks
of 32 MiB and more (a large model's weights) are mapped and unmapped as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_freed_memory"]

TRIM_THRESHOLD = 256 << 20   # bytes of free heap top kept for reuse
MMAP_THRESHOLD = 32 << 20    # blocks at least this large are mapped on their own
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3    # mallopt's parameter numbers (malloc.h)


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc's ``malloc`` to keep freed blocks for reuse (``mallopt``); once per process.

    Returns whether the setting is in force: ``False`` off Linux/glibc (musl, macOS,
    Windows), where nothing is changed. Forked workers inherit it.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))

"""Memory before allocating: will a command's matrices fit in this machine's memory?

An analysis of an ``(m, n)`` matrix holds a few ``(m, n)`` arrays at once (the matrix, its SVD
factors, a residual, the float64 copies the generators draw in), so its peak is about
``copies × m × n × 8`` bytes. :func:`check_matrix_memory` compares that with the memory
available (``MemAvailable``, or the cgroup's limit when lower) and refuses, before anything is
allocated, with a line that says what would fit. No torch import.
"""

from __future__ import annotations

import math
import os

from ..errors import LoralabError

__all__ = ["available_memory", "check_matrix_memory", "format_bytes"]

_USABLE = 0.8          # leave a fifth of what is free to everything else


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def _cgroup_available() -> int | None:
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as fh:
            limit = fh.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as fh:
            used = int(fh.read().strip())
        return max(0, int(limit) - used)
    except (OSError, ValueError):
        return None


def available_memory() -> int | None:
    """Bytes this process can still allocate (``None`` when the system does not say)."""
    found = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    if "LORALAB_MEMORY_LIMIT" in os.environ:          # tests and shared machines
        try:
            found.append(int(float(os.environ["LORALAB_MEMORY_LIMIT"])))
        except ValueError:
            raise LoralabError(f"LORALAB_MEMORY_LIMIT={os.environ['LORALAB_MEMORY_LIMIT']!r}"
                               " is not a number of bytes") from None
    return min(found) if found else None


def format_bytes(n: float) -> str:
    """``1.5 GiB`` style."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} PiB"   # pragma: no cover


def check_matrix_memory(shape: tuple[int, int], *, copies: int, what: str,
                        flag: str = "--hidden-size", square: bool = True) -> int:
    """Refuse (``LoralabError``) when ``copies`` float64 ``(m, n)`` arrays would not fit.

    ``what`` names the work (``"a 512 × 512 matrix and its SVD"``), ``flag`` the option to
    lower; with ``square`` the message gives the largest square size that fits. Returns the
    estimate in bytes."""
    m, n = int(shape[0]), int(shape[1])
    need = copies * m * n * 8
    free = available_memory()
    if free is None or need <= _USABLE * free:
        return need
    fits = int(math.isqrt(int(_USABLE * free / (copies * 8))))
    hint = (f"at most {flag} {fits:,} fits" if square
            else f"at most about {int(_USABLE * free / (copies * 8)):,} entries (m × n) fit")
    raise LoralabError(f"out of memory: {what} needs about {format_bytes(need)}, and this "
                       f"machine has {format_bytes(free)} free; {hint}")

"""How much memory this process can still allocate, and bytes written for people.

A helper at the bottom of the layers (no torch import), shared by the memory checks of
:mod:`loralab.lowrank.budget` (matrices) and :mod:`loralab.lm.memory` (training runs):

* :func:`available_memory`: ``MemAvailable`` of ``/proc/meminfo`` (or ``sysconf``), or the
  cgroup's ``memory.max − memory.current`` when lower, or ``LORALAB_MEMORY_LIMIT`` (bytes, for
  tests and shared machines) when lower still; ``None`` when the system does not say;
* :data:`USABLE`: the fraction of that a check lets one command take (the rest is left to
  everything else);
* :func:`format_bytes`: ``1.5 GiB`` style.
"""

from __future__ import annotations

import math
import os

from .errors import LoralabError

__all__ = ["USABLE", "available_memory", "format_bytes"]

USABLE = 0.8          # leave a fifth of what is free to everything else


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
        text = os.environ["LORALAB_MEMORY_LIMIT"]
        try:
            limit = float(text)
        except ValueError:
            raise LoralabError(f"LORALAB_MEMORY_LIMIT={text!r} is not a number of bytes") \
                from None
        if not (math.isfinite(limit) and limit >= 1):    # 0 would refuse every size, and
            raise LoralabError(f"LORALAB_MEMORY_LIMIT={text!r} is not allowed; give a number "
                               "of bytes >= 1 (e.g. 2e9), or unset it")  # blame the flags
        found.append(int(limit))
    return min(found) if found else None


def format_bytes(n: float) -> str:
    """``1.5 GiB`` style."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} PiB"   # pragma: no cover

"""Memory before allocating: will a command's matrices fit in this machine's memory?

An analysis of an ``(m, n)`` matrix holds a few ``(m, n)`` arrays at once (the matrix, its SVD
factors, a residual, the float64 copies the generators draw in), so its peak is about
``copies × m × n × 8`` bytes. :func:`check_matrix_memory` compares that with the memory
available (``MemAvailable``, or the cgroup's limit when lower) and refuses, before anything is
allocated, with a line that says what would fit. No torch import. ``available_memory`` and
``format_bytes`` live in :mod:`loralab.memory_info` (shared with :mod:`loralab.lm.memory`) and
are re-exported here.
"""

from __future__ import annotations

import math

from ..errors import LoralabError
from ..memory_info import USABLE as _USABLE
from ..memory_info import available_memory, format_bytes

__all__ = ["available_memory", "check_matrix_memory", "format_bytes"]

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
    hint = (f"at most {flag} {fits:,} fits" if square and fits >= 1
            else "not even a 1 × 1 matrix fits: free some memory" if fits < 1
            else f"at most about {int(_USABLE * free / (copies * 8)):,} entries (m × n) fit")
    raise LoralabError(f"out of memory: {what} needs about {format_bytes(need)}, and this "
                       f"machine has {format_bytes(free)} free; {hint}")

"""A tensor read from a file, cast to the dtype it will be used in, and checked *after* the
cast: what is checked is what will be computed with.

A float64 entry of ``1e300`` is finite in the file and ``inf`` in float32; one of ``1e-300``
is non-zero in the file and ``0`` in float32. Checking the file's tensor and then casting lets
both through, so every reader (``load_adapter``, the matrix readers) goes through
:func:`checked_cast`, which refuses:

* NaN/Inf entries in the file,
* finite entries that become ``±inf`` in the target dtype (overflow),
* non-zero entries that become ``0`` in the target dtype (underflow),

each with one :class:`~loralab.errors.LoralabError` line that names the tensor, the dtypes and
the advice. float8 tensors (``float8_e4m3fn``, ``float8_e5m2``, ...), on which torch has no
``isfinite``, are checked through their exact float32 values. No torch import at module level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import LoralabError

if TYPE_CHECKING:
    import torch

__all__ = ["checked_cast", "dtype_name"]


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).removeprefix("torch.")


def _widened(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself, or its exact float32 values when torch cannot test it (float8)."""
    import torch

    if t.is_floating_point() and t.element_size() == 1:
        return t.to(torch.float32)                 # float8 -> float32 is exact
    return t


def checked_cast(t: torch.Tensor, dtype: torch.dtype, what: str, advice: str = "") -> torch.Tensor:
    """``t`` cast to ``dtype`` (a float dtype), refused unless every value survives the cast.

    Raises :class:`LoralabError` when ``t`` (any real dtype) holds NaN/Inf, or when a finite
    entry becomes ``±inf`` or a non-zero entry becomes ``0`` in ``dtype``. ``advice`` ends
    the overflow/underflow messages (e.g. ``"use --dtype float64"``)."""
    import torch

    src = _widened(t)
    if src.is_floating_point():
        bad = ~torch.isfinite(src)
        if bool(bad.any()):
            raise LoralabError(f"{what} has {int(bad.sum())} NaN/Inf entries; only finite "
                               "values are allowed")
    out = src.to(dtype)
    tail = f"; {advice}" if advice else ""
    name, source = dtype_name(dtype), dtype_name(t.dtype)
    if out.is_floating_point() and out.numel():
        over = ~torch.isfinite(out)
        if bool(over.any()):
            big = float(src[over].abs().max().double())
            raise LoralabError(f"overflow: {what} has entries up to {big:.3g} ({source}), "
                               f"beyond the {name} range (largest {torch.finfo(dtype).max:.3g})"
                               f": they would become inf{tail}")
        lost = (out == 0) & (src != 0)
        if bool(lost.any()):
            small = float(src[lost].abs().max().double())
            raise LoralabError(f"underflow: {what} has {int(lost.sum())} non-zero entries "
                               f"(up to {small:.3g}, {source}) below the {name} range: they "
                               f"would become 0{tail}")
    return out

"""Input checks and test matrices with a known spectrum, for the low-rank analyses.

:func:`as_matrix` and :func:`check_ranks` turn bad input into one precise
:class:`~loralab.errors.LoralabError`. The constructors draw from private generators (an int
seed or a ``torch.Generator``), so the same seed gives the same matrix:

* :func:`gaussian_matrix`: ``W ~ N(0, 1)``, the seed's ``W0`` (flat spectrum);
* :func:`matrix_with_spectrum`: ``U diag(s) Vᵀ`` with Haar-random orthonormal ``U, V``;
* :func:`low_rank_plus_noise`: a decaying low-rank signal plus Gaussian noise, the shape of
  spectrum a fine-tuning update has.

:func:`tail_energy` is the one formula every error here comes from (Eckart–Young).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from ..errors import LoralabError, check_choice

if TYPE_CHECKING:
    import torch

__all__ = [
    "KINDS",
    "Kind",
    "as_matrix",
    "check_range",
    "check_ranks",
    "decaying_spectrum",
    "gaussian_matrix",
    "low_rank_plus_noise",
    "make_matrix",
    "matrix_with_spectrum",
    "tail_energy",
]

Kind = Literal["gaussian", "lowrank"]
KINDS: tuple[str, ...] = ("gaussian", "lowrank")
_DTYPES = ("float32", "float64")


def _generator(seed: int | torch.Generator) -> torch.Generator:
    import torch

    return seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))


def _torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    check_choice("dtype=", dtype, _DTYPES)
    return getattr(torch, dtype)


def as_matrix(w: Any, *, name: str = "matrix") -> torch.Tensor:
    """``w`` as a finite, non-empty 2-D floating tensor (not copied when it already is one).

    Integer and bool inputs become float32. Raises :class:`LoralabError` for any other shape,
    complex values, or NaN/Inf entries (naming how many and where the first one is).
    """
    import torch

    t = torch.as_tensor(w)
    if t.ndim != 2:
        raise LoralabError(f"{name} has shape {tuple(t.shape)}; only 2-D matrices "
                           "(d_out, d_in) are allowed")
    if 0 in t.shape:
        raise LoralabError(f"{name} has shape {tuple(t.shape)}; it must not be empty")
    if t.is_complex():
        raise LoralabError(f"{name} is complex ({t.dtype}); only real matrices are allowed")
    if not t.is_floating_point():
        t = t.to(torch.float32)
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        row, col = (int(v) for v in bad.nonzero()[0])
        raise LoralabError(f"{name} has {int(bad.sum())} NaN/Inf entries (first at row {row}, "
                           f"column {col}); only finite values are allowed")
    check_range(t, name=name)
    return t


def check_range(t: torch.Tensor, *, name: str = "matrix", advice: str | None = None) -> None:
    """Refuse a finite matrix whose norm would overflow (or whose squares would underflow)
    in its own dtype: ``‖W‖_F`` and ``Σ σ_i²`` must stay representable, so the largest
    entry times ``sqrt(m·n)`` must lie within ``sqrt(tiny)·100 .. sqrt(max)/100`` of the
    dtype. An all-zero matrix is fine (every error of it is 0). ``advice`` replaces the
    default advice (``--dtype float64`` unless the matrix is float64 already)."""
    import torch

    lo, hi = torch.aminmax(t.detach())
    big = max(abs(float(lo)), abs(float(hi)))
    if big == 0:
        return
    info = torch.finfo(t.dtype)
    dtype = str(t.dtype).removeprefix("torch.")
    if advice is None:
        advice = "use --dtype float64, or scale the matrix" if t.dtype != torch.float64 \
            else "scale the matrix"
    bound = big * math.sqrt(t.numel())
    if bound > math.sqrt(info.max) / 100:
        raise LoralabError(f"overflow: {name} has entries up to {big:.3g}, so its norm (up to "
                           f"{bound:.3g}) and the squares of its singular values leave the "
                           f"{dtype} range; {advice} down")
    if big < math.sqrt(info.tiny) * 100:
        raise LoralabError(f"underflow: {name} has entries of at most {big:.3g}, whose squares "
                           f"vanish in {dtype}; {advice} up")


def check_ranks(ranks: Any, shape: tuple[int, int]) -> tuple[int, ...]:
    """The ranks sorted and de-duplicated, after checking ``1 ≤ r ≤ min(m, n)`` for each."""
    k = min(shape)
    ranks = tuple(ranks) if not isinstance(ranks, int) else (ranks,)
    if not ranks:
        raise LoralabError("no rank given; give at least one, e.g. 2,4,8")
    for r in ranks:
        if isinstance(r, bool) or not isinstance(r, int):
            raise LoralabError(f"rank {r!r} is not allowed; ranks must be integers")
        if r < 1 or r > k:
            raise LoralabError(f"rank {r} is not allowed; ranks must be 1..min(m, n) = {k} "
                               f"for this {tuple(shape)} matrix")
    return tuple(sorted(set(ranks)))


def gaussian_matrix(m: int, n: int, *, seed: int | torch.Generator = 0,
                    dtype: str | torch.dtype = "float32") -> torch.Tensor:
    """``W ~ N(0, 1)`` of shape ``(m, n)``, drawn in float32 (as the seed does) then cast."""
    import torch

    return torch.randn(m, n, generator=_generator(seed)).to(_torch_dtype(dtype))


def _orthonormal(rows: int, cols: int, gen: torch.Generator) -> torch.Tensor:
    """A Haar-random ``(rows, cols)`` matrix with orthonormal columns, float64."""
    import torch

    q, r = torch.linalg.qr(torch.randn(rows, cols, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, 1.0)


def matrix_with_spectrum(singular_values: Any, m: int, n: int, *,
                         seed: int | torch.Generator = 0,
                         dtype: str | torch.dtype = "float32") -> torch.Tensor:
    """``U diag(s) Vᵀ`` with Haar-random orthonormal ``U: (m, p)``, ``V: (n, p)``: a matrix
    whose singular values are exactly ``s`` (``p = len(s) ≤ min(m, n)``; the rest are 0)."""
    import torch

    s = torch.as_tensor(singular_values, dtype=torch.float64).flatten()
    if s.numel() > min(m, n) or s.numel() == 0:
        raise LoralabError(f"{s.numel()} singular values are not allowed for a ({m}, {n}) "
                           f"matrix; give 1..{min(m, n)}")
    if bool((s < 0).any()) or not bool(torch.isfinite(s).all()):
        raise LoralabError("singular values must be finite and >= 0")
    gen = _generator(seed)
    u = _orthonormal(m, s.numel(), gen)                      # (m, p)
    v = _orthonormal(n, s.numel(), gen)                      # (n, p)
    return ((u * s) @ v.T).to(_torch_dtype(dtype))          # (m, p) @ (p, n) -> (m, n)


def decaying_spectrum(rank: int, m: int, n: int, *, last: float = 0.1) -> torch.Tensor:
    """``rank`` geometric singular values ``s_i = s_1·last^((i−1)/(rank−1))``, scaled so
    that ``Σ s_i² = m·n`` (a matrix with unit RMS entry). float64, descending."""
    import torch

    if rank < 1 or rank > min(m, n):
        raise LoralabError(f"signal rank {rank} is not allowed; it must be 1..min(m, n) = "
                           f"{min(m, n)}")
    steps = torch.arange(rank, dtype=torch.float64) / max(rank - 1, 1)
    s = last ** steps
    return s * (m * n / s.square().sum()).sqrt()


def low_rank_plus_noise(m: int, n: int, *, rank: int = 32, noise: float = 0.1,
                        seed: int | torch.Generator = 0,
                        dtype: str | torch.dtype = "float32") -> torch.Tensor:
    """A fine-tuning-like update: ``L + noise·E`` where ``L`` has the
    :func:`decaying_spectrum` (rank ``rank``, unit RMS entry, ``σ_rank = σ_1/10``) and
    ``E ~ N(0, 1)``. ``noise`` is the noise's RMS relative to the signal's."""
    import torch

    if not noise >= 0:
        raise LoralabError(f"noise={noise!r} is not allowed; it must be >= 0")
    gen = _generator(seed)
    signal = matrix_with_spectrum(decaying_spectrum(rank, m, n), m, n, seed=gen,
                                  dtype="float64")
    e = torch.randn(m, n, generator=gen, dtype=torch.float64)
    return (signal + noise * e).to(_torch_dtype(dtype))


def make_matrix(kind: Kind, m: int, n: int, *, seed: int | torch.Generator = 0,
                dtype: str | torch.dtype = "float32", rank: int = 32,
                noise: float = 0.1) -> torch.Tensor:
    """``gaussian`` (:func:`gaussian_matrix`) or ``lowrank`` (:func:`low_rank_plus_noise`)."""
    if kind == "gaussian":
        return gaussian_matrix(m, n, seed=seed, dtype=dtype)
    if kind == "lowrank":
        return low_rank_plus_noise(m, n, rank=rank, noise=noise, seed=seed, dtype=dtype)
    raise LoralabError(f"kind={kind!r} is not allowed; choose one of {', '.join(KINDS)}")


def tail_energy(sigma: torch.Tensor) -> torch.Tensor:
    """``tail[r] = Σ_{i>r} σ_i²`` for ``r = 0..k``: shape ``(k + 1,)``, float64, from a
    reversed cumulative sum (accurate even where the tail is tiny)."""
    import torch

    e = sigma.detach().to(torch.float64).square()                      # (k,)
    return torch.cat([e.flip(0).cumsum(0).flip(0), e.new_zeros(1)])    # (k + 1,)

"""The seed's random update ``ΔW = (α/r)·B A``, drawn in ONE place and ONE order.

The seed script draws ``W0`` and then, for each rank ``r``, ``B: (d_out, r)`` and
``A: (r, d_in)`` with i.i.d. ``N(0, 1)`` entries from one generator, ``B`` first. Three
things must reproduce that stream number for number (``loralab demo``, the random baseline of
``loralab svd`` and ``loralab heatmap --delta-kind seed``, and the report that quotes them),
so all three call :func:`draw_seed_delta`.

Convention: the LoRA paper's and PEFT's, ``A: (r, d_in)``, ``B: (d_out, r)``,
``ΔW = (α/r)·B A`` of shape ``(d_out, d_in)`` and rank at most ``r``. For Gaussian factors
``E‖B A‖_F² = d_out·d_in·r``, so ``E‖ΔW‖_F² = α²·d_out·d_in / r``
(:func:`loralab.lowrank.theory.theory_delta_norm`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import LoralabError
from .matrices import _generator

if TYPE_CHECKING:
    import torch

__all__ = ["SeedDelta", "draw_seed_delta"]


@dataclass(frozen=True, eq=False)
class SeedDelta:
    """One draw of the seed's update at rank ``r`` (equal only to itself: two draws are
    compared by their tensors, ``torch.equal``).

    Attributes:
        b: ``B: (d_out, r)``, drawn first, in torch's default dtype (float32).
        a: ``A: (r, d_in)``, drawn second.
        alpha: the LoRA scale ``α``; the update is ``(α/r)·B A``.
    """

    b: torch.Tensor = field(repr=False)
    a: torch.Tensor = field(repr=False)
    alpha: float

    @property
    def rank(self) -> int:
        """``r``: the inner dimension of ``B A``."""
        return int(self.a.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """``(d_out, d_in)``: the shape of ``ΔW``."""
        return int(self.b.shape[0]), int(self.a.shape[1])

    def delta(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``ΔW = (α/r)·(B A)``: ``(d_out, r) @ (r, d_in) -> (d_out, d_in)``, with ``B`` and
        ``A`` cast to ``dtype`` first (``None``: as drawn, float32)."""
        b, a = (self.b, self.a) if dtype is None else (self.b.to(dtype), self.a.to(dtype))
        return (self.alpha / self.rank) * (b @ a)

    def frobenius_norm(self) -> float:
        """``‖ΔW‖_F = |α/r|·sqrt(Σ_ij (BᵀB)_ij (AAᵀ)_ij)`` in float64, without forming the
        ``(d_out, d_in)`` product: ``‖BA‖_F² = tr(AᵀBᵀBA) = ⟨BᵀB, AAᵀ⟩``, two ``(r, r)``
        Gram matrices, O((d_out + d_in)·r²)."""
        b, a = self.b.double(), self.a.double()
        sq = float(((b.T @ b) * (a @ a.T)).sum())                      # (r, r) ⊙ (r, r)
        return abs(self.alpha / self.rank) * max(sq, 0.0) ** 0.5


def draw_seed_delta(shape: tuple[int, int], rank: int, *, alpha: float,
                    generator: int | torch.Generator) -> SeedDelta:
    """Draw ``B: (d_out, r)`` then ``A: (r, d_in)`` ~ ``N(0, 1)`` from ``generator`` (the seed's
    order; a ``torch.Generator`` continues its stream, an int seeds a fresh one).

    ``shape = (d_out, d_in)``; ``rank = r ≥ 1``. The factors are drawn in torch's default
    dtype (float32, as the seed does) so that every caller gets the same numbers whatever
    precision it computes in afterwards (:meth:`SeedDelta.delta`).
    """
    import torch

    d_out, d_in = int(shape[0]), int(shape[1])
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise LoralabError(f"rank {rank!r} is not allowed; it must be an integer >= 1")
    gen = _generator(generator)
    b = torch.randn(d_out, rank, generator=gen)                        # B: (d_out, r)
    a = torch.randn(rank, d_in, generator=gen)                         # A: (r, d_in)
    return SeedDelta(b=b, a=a, alpha=alpha)

"""What ``loralab heatmap`` shows: ``W0``, ``ΔW``, ``W = W0 + ΔW`` and ``ΔW − [ΔW]_r``.

``[ΔW]_r`` is the best rank-r approximation of the update (truncated SVD), so the residual
``W − (W0 + [ΔW]_r) = ΔW − [ΔW]_r`` is the least any rank-r LoRA on ``W0`` leaves out, and by
Eckart–Young ``‖ΔW − [ΔW]_r‖_F = sqrt(Σ_{i>r} σ_i(ΔW)²)``: one SVD of ``ΔW`` gives every
rank (:func:`analyze_heatmap`). :func:`generated_delta` draws the update the command uses
when none is given. ``W0, ΔW: (d_out, d_in) = (m, n)``; nothing here mutates its inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..errors import LoralabError, check_choice
from .matrices import as_matrix, check_ranks, low_rank_plus_noise
from .seed import draw_seed_delta
from .sweep import SvdSweep, svd_factors, sweep_from_singular_values

if TYPE_CHECKING:
    import torch

__all__ = ["DELTA_KINDS", "DeltaKind", "HeatmapAnalysis", "analyze_heatmap", "block_size",
           "generated_delta"]

DeltaKind = Literal["lowrank", "seed"]
DELTA_KINDS: tuple[str, ...] = ("lowrank", "seed")


def block_size(shape: tuple[int, int], max_cells: int = 512) -> int:
    """``b = ceil(max(m, n)/max_cells)``: the side of the blocks a heatmap averages."""
    return max(1, math.ceil(max(shape) / max_cells))


def generated_delta(kind: DeltaKind, w0: torch.Tensor, *, rank: int,
                    generator: int | torch.Generator, alpha: float = 16.0,
                    scale: float = 0.5, noise: float = 0.1) -> tuple[torch.Tensor, str]:
    """``(ΔW, label)``: a generated update of ``W0``'s shape and dtype.

    ``seed``: the seed's ``(α/K)·B A`` with ``K = rank`` (:func:`draw_seed_delta`,
    formed in float32 as drawn, then cast). ``lowrank``: :func:`low_rank_plus_noise` of signal
    rank ``K`` in float64, scaled so that ``‖ΔW‖_F = scale·‖W0‖_F``. ``generator``
    continues ``W0``'s stream when it is the one ``W0`` was drawn from.
    """
    import torch

    check_choice("kind=", kind, DELTA_KINDS)
    m, n = (int(v) for v in w0.shape)
    if kind == "seed":
        if rank > min(m, n):
            raise LoralabError(f"signal rank {rank} is not allowed; it must be 1..{min(m, n)}")
        draw = draw_seed_delta((m, n), rank, alpha=alpha, generator=generator)
        return draw.delta().to(w0.dtype), f"seed's (α/K)·BA, K = {rank}"
    if not (scale > 0):
        raise LoralabError(f"scale={scale!r} is not allowed; it must be > 0")
    d = low_rank_plus_noise(m, n, rank=rank, noise=noise, seed=generator, dtype="float64")
    d = d * (scale * float(torch.linalg.vector_norm(w0, dtype=torch.float64))
             / float(torch.linalg.vector_norm(d)))
    return d.to(w0.dtype), f"low rank {rank} + noise {noise:g}, ×{scale:g}‖W0‖_F"


@dataclass(frozen=True)
class HeatmapAnalysis:
    """``W0``, ``ΔW`` and the rank-r residual norms of ``ΔW`` (``to_dict()`` is the
    ``--json`` of ``loralab heatmap``).

    Attributes:
        w0_label, delta_label: short names for titles and tables.
        w0_norm: ``‖W0‖_F`` (float64).
        sweep: ``ΔW``'s Eckart–Young sweep: ``optimal_error[i] = ‖ΔW − [ΔW]_r‖_F`` and
            ``relative_error[i]`` that over ``‖ΔW‖_F``, for ``r = ranks[i]``.
        max_cells: matrices larger than this per side are shown block-averaged.
        w0, delta: ``(m, n)`` each; ``factors``: ``ΔW``'s thin SVD ``U: (m, k), S: (k,),
            Vh: (k, n)``, reused by the figure.
    """

    w0_label: str
    delta_label: str
    w0_norm: float
    sweep: SvdSweep
    max_cells: int
    w0: torch.Tensor = field(repr=False, compare=False)
    delta: torch.Tensor = field(repr=False, compare=False)
    factors: tuple[torch.Tensor, torch.Tensor, torch.Tensor] = field(repr=False,
                                                                      compare=False)

    @property
    def shape(self) -> tuple[int, int]:
        """``(m, n)``."""
        return self.sweep.shape

    @property
    def block(self) -> int:
        """The side of the blocks the heatmaps average (:func:`block_size`; 1: none)."""
        return block_size(self.shape, self.max_cells)

    def to_dict(self) -> dict[str, Any]:
        """``{"shape", "w0", "delta", "w0_norm", "delta_norm", "block", "ranks",
        "residual_error", "residual_relative"}``."""
        sw = self.sweep
        return {"shape": list(sw.shape), "w0": self.w0_label, "delta": self.delta_label,
                "w0_norm": self.w0_norm, "delta_norm": sw.frobenius_norm,
                "block": self.block, "ranks": sw.ranks, "residual_error": sw.optimal_error,
                "residual_relative": sw.relative_error}


def analyze_heatmap(w0: Any, delta: Any, ranks: Any, *, w0_label: str = "W0",
                    delta_label: str = "ΔW", max_cells: int = 512) -> HeatmapAnalysis:
    """One thin SVD of ``ΔW`` (kept for the figure's residuals) and every rank's residual
    norm from it; ``W0`` only for ``‖W0‖_F`` and the figure. ``ΔW`` is checked finite and
    in range (:func:`as_matrix`) and of ``W0``'s shape, ``ranks`` against that shape (used
    sorted, each 1..min(m, n))."""
    import torch

    delta = as_matrix(delta, name=f"ΔW ({delta_label})")
    w0 = as_matrix(w0, name=f"W0 ({w0_label})")
    shape = (int(delta.shape[0]), int(delta.shape[1]))
    if tuple(w0.shape) != shape:
        raise LoralabError(f"ΔW {delta_label!r} has shape {shape}; it must match W0's "
                           f"{tuple(w0.shape)}")
    ranks = check_ranks(ranks, shape)
    factors = svd_factors(delta)
    sweep = sweep_from_singular_values(factors[1], ranks, shape)
    w0_norm = float(torch.linalg.vector_norm(w0, dtype=torch.float64))
    return HeatmapAnalysis(w0_label=w0_label, delta_label=delta_label, w0_norm=w0_norm,
                           sweep=sweep, max_cells=max_cells, w0=w0, delta=delta,
                           factors=factors)

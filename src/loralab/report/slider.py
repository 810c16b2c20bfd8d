"""The report's rank explorer: for each rank on the slider, numbers and a heatmap figure.

Two matrices, both ``(d, d)``:

* the seed's ``W0 ~ N(0, 1)`` (drawn exactly as :func:`loralab.demo.run_demo` draws it, so it
  is the same matrix as in the demo chapter), whose flat spectrum no small rank captures;
* a *structured update* ``ΔW = L + noise`` (:func:`loralab.lowrank.low_rank_plus_noise`:
  ``L`` of rank ``k`` with singular values falling 10× from the first to the k-th), the kind
  of update LoRA bets a fine-tuning task needs (a few directions carry most of the energy).

For each rank ``r`` the best rank-``r`` approximation ``M_r = U_r Σ_r V_rᵀ`` (Eckart–Young)
comes from one SVD per matrix; the figure shows a top-left ``crop × crop`` corner of
``M``, ``M_r`` and ``M − M_r`` on a colour scale that does not change with ``r``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["STRUCT_NOISE", "SliderData", "SliderRow", "compute_slider"]

STRUCT_NOISE = 0.05     # noise RMS of the structured update, relative to its signal's


@dataclass(frozen=True)
class SliderRow:
    """The numbers the slider shows for one rank (``png`` is the heatmap figure)."""

    rank: int
    seed_delta_norm: float        # the seed's 'error' ‖ΔW‖_F for a random (α/r)·BA
    theory: float                 # α·d/√r
    gauss_error: float            # ‖W0 − W0_r‖_F
    gauss_relative: float         # ‖W0 − W0_r‖_F / ‖W0‖_F
    struct_relative: float        # ‖ΔW − ΔW_r‖_F / ‖ΔW‖_F for the structured update
    trainable_params: int         # r·(d_in + d_out)
    full_params: int              # d_in·d_out
    png: bytes = field(repr=False, default=b"")


@dataclass
class SliderData:
    """Everything the rank explorer needs: ``d``, the crop size and one row per rank."""

    hidden_size: int
    alpha: float
    crop: int
    signal_rank: int
    rows: list[SliderRow]
    noise: float                  # the structured update's noise RMS, relative to the signal


def _truncations(m: torch.Tensor, ranks: list[int], crop: int) -> tuple[list, list[float]]:
    """Crops of ``M_r`` and relative errors ``‖M − M_r‖_F / ‖M‖_F`` for each rank, from one
    SVD of ``M`` in float64 (:func:`loralab.lowrank.svd_factors`, ``truncate``,
    ``sweep_from_singular_values``)."""
    from .. import lowrank

    factors = lowrank.svd_factors(m.double())                        # U (d,k), S (k,), Vh (k,d)
    sweep = lowrank.sweep_from_singular_values(factors[1], ranks, tuple(m.shape))
    crops = [lowrank.truncate(factors, r)[:crop, :crop].numpy() for r in ranks]
    return crops, list(sweep.relative_error)


def compute_slider(hidden_size: int, ranks: tuple[int, ...], *, alpha: float = 16.0,
                   seed: int = 42, crop: int = 32, signal_rank: int = 8,
                   noise: float = STRUCT_NOISE, lang: str = "en",
                   cjk_font: str | None = None) -> SliderData:
    """Numbers and one heatmap PNG per rank (see the module docstring).

    ``ranks`` must start with the seed's ranks for the seed's numbers to match: the random
    ``B, A`` are drawn per rank in order, after ``W0``, as in :func:`loralab.demo.run_demo`.
    """
    from .. import lowrank
    from ..demo import LoraConfig, run_demo
    from ..plots.report import HeatmapRow, rank_figure_pngs
    from .text import plain

    d = hidden_size
    crop = min(crop, d)
    demo = run_demo(LoraConfig(hidden_size=d, rank_candidates=ranks, alpha=alpha), seed=seed)
    w0 = lowrank.gaussian_matrix(d, d, seed=seed)           # the same draw as run_demo's W0
    signal_rank = min(signal_rank, d)
    upd = lowrank.low_rank_plus_noise(d, d, rank=signal_rank, noise=noise, seed=seed + 1)
    g_crops, _ = _truncations(w0, list(ranks), crop)
    s_crops, s_rel = _truncations(upd, list(ranks), crop)
    g_full, s_full = w0[:crop, :crop].numpy(), upd[:crop, :crop].numpy()
    g_vmax, s_vmax = float(abs(g_full).max()), float(abs(s_full).max())
    flang = "zh" if (lang == "zh" and cjk_font) else "en"   # Chinese labels need a CJK font
    frames, titles = [], []
    for i, row in enumerate(demo.rows):
        r = row.rank
        frames.append([
            HeatmapRow(g_full, g_crops[i], g_vmax, (
                plain("sl_fig_gauss", flang), plain("sl_fig_approx", flang, m="W₀", r=r),
                plain("sl_fig_resid", flang, m="W₀", pct=100 * row.optimal_relative))),
            HeatmapRow(s_full, s_crops[i], s_vmax, (
                plain("sl_fig_struct", flang, k=signal_rank),
                plain("sl_fig_approx", flang, m="ΔW", r=r),
                plain("sl_fig_resid", flang, m="ΔW", pct=100 * s_rel[i]))),
        ])
        titles.append(plain("sl_fig_suptitle", flang, r=r, c=crop, d=d))
    pngs = rank_figure_pngs(frames, titles, font=cjk_font if lang == "zh" else None,
                            colorbar_label=plain("sl_fig_value", flang))
    rows = [SliderRow(rank=row.rank, seed_delta_norm=row.delta_norm, theory=row.theory,
                      gauss_error=row.optimal_error, gauss_relative=row.optimal_relative,
                      struct_relative=s_rel[i], trainable_params=row.trainable_params,
                      full_params=row.full_params, png=pngs[i])
            for i, row in enumerate(demo.rows)]
    return SliderData(hidden_size=d, alpha=alpha, crop=crop, signal_rank=signal_rank,
                      rows=rows, noise=noise)

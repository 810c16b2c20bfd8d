"""Heatmaps of the low-rank suite: ``W0``, ``W = W0 + ΔW``, ``ΔW`` and the rank-r residuals.

Two shared, symmetric diverging colour scales (one for the weights, one for the update and its
residuals), true row/column indices on the axes, and block means for large matrices.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..lowrank.heatmap import block_size
from . import new_figure

if TYPE_CHECKING:
    import numpy as np
    import torch
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["block_average", "block_size", "heatmap_figure", "heatmaps_figure"]

_HEAT_CMAP = "RdBu_r"


def block_average(mat: Any, max_cells: int = 512) -> tuple[np.ndarray, int]:
    """``(averaged, b)``: the mean of each ``b × b`` block, ``b = ceil(max(m, n)/max_cells)``
    (edge blocks average only the entries they hold), float64. ``b = 1`` returns the matrix.

    Sums by ``np.add.reduceat`` over the block starts: no padded or float64 copy of the
    whole matrix is made.
    """
    import numpy as np

    a = np.asarray(mat.detach().cpu().numpy() if hasattr(mat, "detach") else mat)
    m, n = a.shape
    b = block_size((m, n), max_cells)
    if b == 1:
        return a.astype(np.float64), 1
    row_starts, col_starts = np.arange(0, m, b), np.arange(0, n, b)
    sums = np.add.reduceat(a, row_starts, axis=0, dtype=np.float64)     # (m/b, n)
    sums = np.add.reduceat(sums, col_starts, axis=1)                     # (m/b, n/b)
    counts = np.outer(np.minimum(b, m - row_starts), np.minimum(b, n - col_starts))
    return sums / counts, b


def _scale(*arrays: np.ndarray) -> float:
    """A symmetric colour limit: the 99.5th percentile of |values| (outliers saturate)."""
    import numpy as np

    v = float(np.quantile(np.abs(np.concatenate([a.ravel() for a in arrays])), 0.995))
    return v if v > 0 else 1.0


def _heat(ax: Axes, data: np.ndarray, vmax: float, title: str, first: bool,
          shape: tuple[int, int]) -> Any:
    # extent in the matrix's own indices, so block-averaged maps keep true row/column ticks
    m, n = shape
    # Few cells: each one a crisp square (and a small PNG); many: antialiased downsampling.
    interp = "nearest" if max(data.shape) <= 256 else "antialiased"
    im = ax.imshow(data, cmap=_HEAT_CMAP, vmin=-vmax, vmax=vmax, interpolation=interp,
                   extent=(-0.5, n - 0.5, m - 0.5, -0.5))
    ax.set_title(title, fontsize=10)
    ax.grid(False)
    ax.tick_params(labelsize=7)
    if first:
        ax.set_ylabel("row (d_out)")
        ax.set_xlabel("column (d_in)")
    return im


def _fro(x: torch.Tensor) -> float:
    """``‖x‖_F``, accumulated in float64."""
    import torch

    return float(torch.linalg.vector_norm(x, dtype=torch.float64))


def _residuals(delta: torch.Tensor, factors: tuple, ranks: list[int], d_norm: float,
               max_cells: int) -> list[tuple[int, np.ndarray, float]]:
    """Per rank r: ``(r, block-averaged R_r, ‖R_r‖_F / ‖ΔW‖_F)`` with ``R_r = ΔW − [ΔW]_r``."""
    from ..lowrank import truncate

    res = []
    for r in ranks:
        resid = delta - truncate(factors, r)                          # (m, n)
        rel = _fro(resid) / d_norm if d_norm > 0 else 0.0           # ΔW = 0: nothing left
        res.append((r, block_average(resid, max_cells)[0], rel))
    return res


def _panel_grid(panels: int, shape: tuple[int, int]) -> tuple[Figure, list[Axes]]:
    """A figure of ``panels`` square-ish cells, 4 or 3 a row (the fewer empty cells, 4 on a
    tie), each cell's height following the matrix's aspect ``m/n`` within [0.5, 1.4]."""
    ncols = min((4, 3), key=lambda c: (-panels) % c)
    nrows = math.ceil(panels / ncols)
    m, n = shape
    panel = 3.6
    fig = new_figure(ncols * panel + 1.2, nrows * panel * min(1.4, max(0.5, m / n)) + 1.6)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, list(axes.ravel())


def heatmaps_figure(w0: Any, delta: Any, ranks: list[int], *, factors: tuple | None = None,
                    max_cells: int = 512) -> Figure:
    """``W₀``, ``W = W₀ + ΔW``, ``ΔW`` and the residual ``ΔW − [ΔW]_r`` of each rank, i.e.
    ``W − (W₀ + [ΔW]_r)``: what a rank-r LoRA on ``W₀`` must leave out at best.

    Two shared, symmetric colour scales: one for ``W₀`` and ``W`` (comparable), one for
    ``ΔW`` and the residuals. Matrices larger than ``max_cells`` are block-averaged.
    ``factors``: the thin SVD of ``ΔW`` when already computed.
    """
    from ..errors import LoralabError
    from ..lowrank import as_matrix, check_ranks, svd_factors

    w0 = as_matrix(w0, name="W0")
    delta = as_matrix(delta, name="ΔW")
    if w0.shape != delta.shape:
        raise LoralabError(f"W0 {tuple(w0.shape)} and ΔW {tuple(delta.shape)} differ in shape; "
                           "they must match")
    ranks = list(check_ranks(ranks, tuple(delta.shape)))
    factors = factors if factors is not None else svd_factors(delta)
    d_norm = _fro(delta)
    w_img, block = block_average(w0, max_cells)
    sum_img, _ = block_average(w0 + delta, max_cells)
    d_img, _ = block_average(delta, max_cells)
    res = _residuals(delta, factors, ranks, d_norm, max_cells)
    m, n = delta.shape
    shape = (m, n)
    fig, flat = _panel_grid(3 + len(ranks), shape)
    vw = _scale(w_img, sum_img)
    vd = _scale(d_img)
    im_w = _heat(flat[0], w_img, vw, "W₀ (base weight)", True, shape)
    _heat(flat[1], sum_img, vw, "W = W₀ + ΔW", False, shape)
    im_d = _heat(flat[2], d_img, vd, "ΔW (the update)", False, shape)
    for ax, (r, img, rel) in zip(flat[3:], res, strict=False):
        _heat(ax, img, vd, f"residual ΔW − [ΔW]$_{{{r}}}$ (r = {r})\n"
                           f"‖·‖_F = {rel:.1%} of ‖ΔW‖_F", False, shape)
    for ax in flat[3 + len(res):]:
        ax.set_visible(False)
    fig.colorbar(im_w, ax=flat[:2], location="bottom", shrink=0.8, extend="both",
                 label="W₀ and W entries (one shared scale)")
    fig.colorbar(im_d, ax=[flat[2]] + flat[3:3 + len(res)], location="right", shrink=0.8,
                 extend="both", pad=0.01, label="ΔW and residual entries (one shared scale)")
    note = f", each cell the mean of a {block}×{block} block" if block > 1 else ""
    w_norm = _fro(w0)
    ratio = f"{d_norm / w_norm:.2f}" if w_norm > 0 else "n/a (W₀ = 0)"
    fig.suptitle(f"Where the update sits: ({m}, {n}){note}; ‖ΔW‖_F / ‖W₀‖_F = {ratio}",
                 fontweight="bold")
    return fig


def heatmap_figure(w0: Any, delta: Any, rank: int, *, factors: tuple | None = None,
                   max_cells: int = 512) -> Figure:
    """One rank of :func:`heatmaps_figure`: ``W₀ | W | ΔW | ΔW − [ΔW]_r`` side by side."""
    return heatmaps_figure(w0, delta, [rank], factors=factors, max_cells=max_cells)

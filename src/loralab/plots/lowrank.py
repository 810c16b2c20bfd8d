"""Figures of the low-rank suite: ``loralab svd``, ``spectrum``, ``heatmap`` and ``fit``.

Each ``*_figure`` function returns a :class:`matplotlib.figure.Figure` (built without pyplot)
from the plain results of :mod:`loralab.lowrank`, so the CLI saves it with
:func:`loralab.plots.save_png` and the HTML report embeds it, e.g. one
:func:`heatmap_figure` per rank of its slider. The heatmaps live in
:mod:`loralab.plots.lowrank_heatmap` and are re-exported here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from . import COLORS, new_figure
from .lowrank_heatmap import block_average, block_size, heatmap_figure, heatmaps_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..lowrank import FitResult, Spectrum, SubspaceSimilarity, SvdAnalysis

__all__ = [
    "MATRIX_COLORS",
    "block_average",
    "block_size",
    "fit_curves_figure",
    "fit_figure",
    "heatmap_figure",
    "heatmaps_figure",
    "similarity_figure",
    "spectrum_figure",
    "svd_figure",
]

# One colour per matrix in the spectrum figure (a Gaussian base, a low-rank update, yours).
MATRIX_COLORS: dict[str, str] = {"gaussian": "#555555", "lowrank": COLORS["lora"],
                                 "input": COLORS["full"]}


def _rank_axis(ax: Axes, ranks: list[int]) -> None:
    """Log-2 x axis with a tick at each requested rank."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log", base=2)
    ax.set_xticks(ranks, [str(r) for r in ranks])
    ax.xaxis.set_minor_formatter(NullFormatter())


# ----------------------------------------------------------------------------- svd

def _rms(frobenius_norm: float, shape: tuple[int, int]) -> float:
    """The RMS entry ``s = ‖W‖_F / √(m·n)`` of an ``(m, n)`` matrix."""
    m, n = shape
    return frobenius_norm / math.sqrt(m * n)


def _draw_svd_sizes(ax: Axes, analysis: SvdAnalysis) -> None:
    """The seed's random ``‖ΔW‖_F`` with its theory ``α·√(mn/r)`` ± 2 std, the best rank-r
    error ``‖W − W_r‖_F`` with the Gaussian reference, and ``‖W‖_F``; log-log."""
    import numpy as np
    from matplotlib.ticker import FuncFormatter

    from ..lowrank.theory import gaussian_optimal_error, theory_delta_norm

    sw = analysis.sweep
    m, n = sw.shape
    ranks = np.array(sw.ranks)
    dense = np.unique(np.geomspace(ranks.min(), ranks.max(), 60).round().astype(int))
    theory = np.array([theory_delta_norm(m, n, int(r), analysis.alpha) for r in dense])
    ax.fill_between(dense, theory[:, 0] - 2 * theory[:, 1], theory[:, 0] + 2 * theory[:, 1],
                    color=COLORS["seed"], alpha=0.15, lw=0, label="theory ± 2 std")
    ax.plot(dense, theory[:, 0], "--", color=COLORS["theory"], label=r"theory $\alpha\sqrt{mn/r}$")
    ax.plot(ranks, [row.delta_norm for row in analysis.random], "o-", color=COLORS["seed"],
            label=r"seed's random $\|\Delta W\|_F$, $\Delta W=(\alpha/r)BA$")
    ax.plot(ranks, sw.optimal_error, "s-", color=COLORS["optimal"],
            label=r"best rank-$r$ $\|W-W_r\|_F$ (truncated SVD)")
    ref = gaussian_optimal_error(m, n, std=_rms(sw.frobenius_norm, (m, n)))
    ax.plot(dense, ref[dense], ":", color=COLORS["theory"], lw=1.5,
            label="quarter-circle theory" if analysis.gaussian
            else "a Gaussian matrix of this shape and norm")
    ax.axhline(sw.frobenius_norm, color=COLORS["base"], lw=1, ls="-.",
               label=r"$\|W\|_F$ (rank 0)")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.4g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:,.4g}"
                                               if str(f"{v:.1e}")[0] in "25" else ""))
    _rank_axis(ax, sw.ranks)
    ax.set_xlabel("rank r")
    ax.set_ylabel("Frobenius norm")
    ax.set_title("The seed's random update is not an approximation:\n"
                 "its size falls as 1/√r by construction; the SVD gives the real optimum")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=2, fontsize=8)


def _draw_svd_relative(ax: Axes, analysis: SvdAnalysis) -> None:
    """Every rank ``r = 1..k``: ``‖W − W_r‖_F / ‖W‖_F``, the spectral ``σ_{r+1}/σ_1`` and the
    Gaussian theory; the requested ranks (exact and randomized SVD) as markers."""
    import numpy as np

    from ..lowrank.theory import gaussian_relative_error

    sw = analysis.sweep
    m, n = sw.shape
    ranks = np.array(sw.ranks)
    curve = np.array(sw.relative_curve())                              # r = 0..k
    k = len(curve) - 1
    all_r = np.arange(1, k + 1)
    s = np.array(sw.singular_values)
    ax.plot(all_r, curve[1:], color=COLORS["optimal"],
            label=r"$\|W-W_r\|_F\,/\,\|W\|_F$ (Frobenius)")
    ax.plot(all_r, np.append(s[1:], 0.0)[: k] / (s[0] if s[0] > 0 else 1.0), ":",
            color=COLORS["optimal"],
            label=r"$\|W-W_r\|_2\,/\,\|W\|_2=\sigma_{r+1}/\sigma_1$ (spectral)")
    theory_rel = gaussian_relative_error(m, n)
    ax.plot(all_r, theory_rel[1:], "--", color=COLORS["theory"], lw=1,
            label="quarter-circle / Marchenko–Pastur theory" if analysis.gaussian
            else "a Gaussian matrix of this shape (reference)")
    ax.plot(ranks, sw.relative_error, "s", color=COLORS["optimal"], label="your ranks")
    if analysis.randomized is not None:
        ax.plot(ranks, analysis.randomized.relative_error, "x", color=COLORS["lora"], ms=9,
                label="randomized (torch.svd_lowrank)")
    last = len(sw.ranks) - 1
    high = sw.relative_error[last] > 0.5
    ax.annotate(f"r = {sw.ranks[last]}: {sw.relative_error[last]:.1%} remains",
                (sw.ranks[last], sw.relative_error[last]), textcoords="offset points",
                xytext=(-60, -45) if high else (15, 45), arrowprops={"arrowstyle": "->"},
                fontsize=9)
    ax.set_xscale("log")
    ax.set_xlim(1, k)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel(f"rank r (1 … min(m, n) = {k})")
    ax.set_ylabel("relative error")
    ax.set_title("What rank r can express (Eckart–Young):\nthe whole curve from one SVD")
    ax.legend(loc="lower left", fontsize=8)


def svd_figure(analysis: SvdAnalysis) -> Figure:
    """Left: the seed's random ``‖ΔW‖_F`` (with its theory ``α·sqrt(mn/r)`` ± std) beside
    the best rank-r error ``‖W − W_r‖_F``, log scales. Right: the relative error of every
    rank ``r = 1..k``, the spectral one ``σ_{r+1}/σ_1``, and the Gaussian theory."""
    sw = analysis.sweep
    m, n = sw.shape
    fig = new_figure(13.0, 5.8)
    left, right = fig.subplots(1, 2)
    _draw_svd_sizes(left, analysis)
    _draw_svd_relative(right, analysis)
    fig.suptitle(f"{analysis.label}: shape ({m}, {n}), ‖W‖_F = {sw.frobenius_norm:,.4g}, "
                 f"α = {analysis.alpha:g}", fontweight="bold")
    return fig


# ----------------------------------------------------------------------------- spectrum

def _draw_one_spectrum(ax_s: Axes, ax_e: Axes, sp: Spectrum, color: str,
                       theory_labels: bool) -> float:
    """``σ_i/σ_1`` on ``ax_s`` and the cumulative energy with its 50/90/99 % ranks on
    ``ax_e``, plus the Gaussian theory of both when ``sp.gaussian`` (labelled only when
    ``theory_labels``). Returns ``σ_i/σ_1`` at 98 % of the index range, for the y limit."""
    import numpy as np

    from ..lowrank.theory import gaussian_singular_values

    s = np.array(sp.singular_values)
    i = np.arange(1, len(s) + 1)
    m, n = sp.shape
    ranks = sp.energy_ranks
    label = (f"{sp.label} ({m}×{n}): r = " + " / ".join(str(v) for v in ranks.values())
             + " for " + " / ".join(ranks) + " of the energy")
    s1 = s[0] if s[0] > 0 else 1.0                    # an all-zero matrix: σ_i = 0
    ax_s.plot(i, s / s1, color=color, label=sp.label)
    ax_e.plot(i, sp.cumulative_energy, color=color, label=label)
    low = s[int(0.98 * (len(s) - 1))] / s1
    dots = [r for r in ranks.values() if r >= 1]
    ax_e.plot(dots, [sp.cumulative_energy[r - 1] for r in dots], "o", color=color, ms=5)
    if sp.gaussian:
        th = gaussian_singular_values(m, n, std=_rms(sp.frobenius_norm, sp.shape))
        ax_s.plot(i, th / s1, "--", color=COLORS["theory"], lw=1,
                  label="Marchenko–Pastur quantiles" if theory_labels else None)
        th_e = np.cumsum(th**2) / np.sum(th**2)
        ax_e.plot(i, th_e, "--", color=COLORS["theory"], lw=1,
                  label="Gaussian theory" if theory_labels else None)
    return low


def _style_spectrum_axes(ax_s: Axes, ax_e: Axes, lowest: float) -> None:
    """Log-log singular values down to ``lowest/2``; energy fractions with 50/90/99 % lines."""
    for f in (0.5, 0.9, 0.99):
        ax_e.axhline(f, color=COLORS["base"], lw=0.8, ls=":")
    ax_s.set_xscale("log")
    ax_s.set_yscale("log")
    ax_s.set_ylim(max(lowest / 2, 1e-6), 1.5)         # the last ~2 % of a square matrix dive
    ax_s.set_xlabel("index i")
    ax_s.set_ylabel(r"$\sigma_i / \sigma_1$")
    ax_s.set_title("Singular values (log scale)")
    ax_s.legend(loc="lower left", fontsize=8)
    ax_e.set_xscale("log")
    ax_e.set_ylim(0, 1.02)
    ax_e.set_xlabel("rank r")
    ax_e.set_ylabel("fraction of ‖W‖_F² in the top r singular values")
    ax_e.set_title("Cumulative energy; dots: ranks for 50 / 90 / 99 %")
    ax_e.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8)


def _draw_mp_histogram(ax: Axes, spectra: list[Spectrum], gauss: list[Spectrum]) -> None:
    """Histogram of ``x = σ/(s√M)`` (``s`` the RMS entry, ``M = max(m, n)``) of each Gaussian
    matrix against the Marchenko–Pastur density of ``c = min/max``; hidden without one."""
    import numpy as np

    from ..lowrank.theory import mp_density, mp_edges, mp_ratio

    if not gauss:
        ax.set_axis_off()
        return
    for sp in gauss:
        m, n = sp.shape
        big, ratio = mp_ratio(m, n)
        x = np.array(sp.singular_values) / (_rms(sp.frobenius_norm, sp.shape) * math.sqrt(big))
        ax.hist(x, bins=int(min(40, max(8, 1.2 * math.sqrt(len(x))))), density=True,
                color=_spectrum_color(sp, spectra.index(sp)), alpha=0.45,
                label=f"{sp.label}: σ/(s√M)")
        grid = np.linspace(0, 1 + math.sqrt(ratio) + 0.05, 400)
        lo, hi = mp_edges(m, n)
        ax.plot(grid, mp_density(grid, ratio), "--", color=COLORS["theory"],
                label=f"Marchenko–Pastur, c = {ratio:.2f}, edges "
                      f"{lo / math.sqrt(big):.2f} … {hi / math.sqrt(big):.2f}")
    ax.set_xlabel(r"$x = \sigma / (s\sqrt{\max(m,n)})$, s = RMS entry")
    ax.set_ylabel("density")
    ax.set_title("Gaussian W₀: Marchenko–Pastur law\n(quarter circle √(4−x²)/π when square)")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.25)        # room for the legend
    ax.legend(loc="upper right", fontsize=8)


def spectrum_figure(spectra: list[Spectrum]) -> Figure:
    """Singular values ``σ_i/σ_1`` (log-log), cumulative energy with the 50/90/99 % ranks,
    and, for the Gaussian matrices, the histogram of ``σ/(s√M)`` against Marchenko–Pastur."""
    fig = new_figure(16.0, 6.0)
    ax_s, ax_e, ax_h = fig.subplots(1, 3)
    gauss = [sp for sp in spectra if sp.gaussian]
    lowest = 1.0
    for idx, sp in enumerate(spectra):
        low = _draw_one_spectrum(ax_s, ax_e, sp, _spectrum_color(sp, idx),
                                 theory_labels=bool(gauss) and sp is gauss[0])
        lowest = min(lowest, low)
    _style_spectrum_axes(ax_s, ax_e, lowest)
    _draw_mp_histogram(ax_h, spectra, gauss)
    fig.suptitle("Spectra: a Gaussian W₀ has a flat spectrum; an update with a decaying "
                 "spectrum keeps most energy in few ranks", fontweight="bold")
    return fig


def _spectrum_color(sp: Spectrum, idx: int) -> str:
    if sp.gaussian:
        return MATRIX_COLORS["gaussian"]
    return MATRIX_COLORS["lowrank"] if idx <= 1 else MATRIX_COLORS["input"]


# ----------------------------------------------------------------------------- fits

def _rank_colors(n: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    return [cmap(0.85 * i / max(n - 1, 1)) for i in range(n)]


def _draw_fit_curves(ax: Axes, ax_ratio: Axes, result: FitResult) -> None:
    import numpy as np

    norm = result.frobenius_norm
    colors = _rank_colors(len(result.fits))
    for fit, c in zip(result.fits, colors, strict=True):
        steps = np.arange(len(fit.history))
        ratio = f"{fit.ratio:.4f}" if math.isfinite(fit.ratio) else "n/a (floor 0)"
        hist = np.array(fit.history) / norm if norm > 0 else np.zeros(len(fit.history))
        ax.plot(steps, np.where(hist > 0, hist, np.nan), color=c,   # 0 has no log: not drawn
                label=f"r = {fit.rank}: learned / optimal = {ratio}")
        if fit.optimal_error > 0:
            ax.axhline(fit.optimal_error / norm, color=c, ls="--", lw=1)
    positive = norm > 0 and any(v > 0 for f in result.fits for v in f.history)
    ax.set_yscale("log" if positive else "linear")
    lows = [v for f in result.fits for v in (min(f.history), f.optimal_error) if v > 0]
    if lows and norm > 0:       # lowest curve at 30 % of the height: room for the legend
        lo, top = min(lows) / norm, 1.15
        ax.set_ylim(math.exp((math.log(lo) - 0.3 * math.log(top)) / 0.7), top)
    ax.set_xlabel("Adam step")
    ax.set_ylabel(r"$\|W - (\alpha/r)BA\|_F \,/\, \|W\|_F$")
    ax.set_title("Learned LoRA fit (B = 0, A random at start)\n"
                 "dashed: the Eckart–Young floor of each rank")
    ax.legend(loc="lower left", fontsize=8)

    ranks = [f.rank for f in result.fits]
    ratios = [f.ratio for f in result.fits]
    ratios = [x if math.isfinite(x) else math.nan for x in ratios]   # floor 0: not drawn
    ax_ratio.plot(ranks, ratios, "o-", color=COLORS["learned"], label="learned / optimal")
    ax_ratio.axhline(1.0, color=COLORS["optimal"], label="Eckart–Young floor (= 1)")
    ax_ratio.axhline(1.01, color=COLORS["base"], ls=":", label="1 % above the floor")
    finite = [x for x in ratios if math.isfinite(x)] or [1.0]
    ax_ratio.set_ylim(min(0.998, min(finite) - 0.002), max(1.02, max(finite) * 1.005))
    _rank_axis(ax_ratio, ranks)
    if not any(math.isfinite(x) for x in ratios):   # every floor 0 (full rank): no points,
        ax_ratio.set_xlim(min(ranks) / 2, max(ranks) * 2)   # so the log axis needs limits
    ax_ratio.set_xlabel("rank r")
    ax_ratio.set_ylabel("final error / optimal error")
    ax_ratio.set_title(f"After {result.fits[0].steps} steps: how close to the optimum")
    ax_ratio.legend(loc="upper left", fontsize=8)


def _draw_similarity(ax_map: Axes, ax_diag: Axes, sim: SubspaceSimilarity) -> None:
    import numpy as np

    phi = np.array(sim.phi)
    r1, r2, d = sim.rank_1, sim.rank_2, sim.d_in
    im = ax_map.imshow(phi, cmap="viridis", vmin=0, vmax=1, aspect="auto",
                       extent=(0.5, r2 + 0.5, r1 + 0.5, 0.5), interpolation="nearest")
    ax_map.grid(False)
    ax_map.set_xlabel(f"j (top-j right singular vectors of A, r = {r2})")
    ax_map.set_ylabel(f"i (of A, r = {r1})")
    ax_map.set_title(rf"Subspace similarity $\phi(A_{{{r1}}}, A_{{{r2}}}, i, j)$ of the "
                     "learned fits")
    cbar = ax_map.figure.colorbar(
        im, ax=ax_map, label=f"φ   (red: random baseline max(i, j)/d = {1 / d:.3f} … {r2 / d:.3f})")
    cbar.ax.axhspan(1 / d, r2 / d, facecolor="none", edgecolor="red", hatch="///", lw=1.5)

    i = np.arange(1, r1 + 1)
    ax_diag.plot(i, np.diag(phi), "o-", color=COLORS["learned"], label="learned: φ(i, i)")
    ax_diag.plot(i, phi[:, -1], "^:", color=COLORS["learned"],
                 label=f"learned: φ(i, j = {r2})")
    ax_diag.plot(i, np.diag(np.array(sim.phi_init)), "s-", color=COLORS["base"], ms=4,
                 label="A at initialisation (random): φ(i, i)")
    ax_diag.plot(i, i / d, "--", color=COLORS["theory"], label="random baseline max(i, j)/d")
    ax_diag.set_ylim(-0.02, 1.05)
    ax_diag.set_xlabel("i")
    ax_diag.set_ylabel("φ")
    ax_diag.set_title(f"Learned subspaces overlap; random ones do not (d = {d})")
    ax_diag.legend(loc="center right", fontsize=8)


def fit_curves_figure(result: FitResult) -> Figure:
    """Error vs step against each rank's floor, and the final learned/optimal ratios."""
    fig = new_figure(13.0, 5.0)
    _draw_fit_curves(*fig.subplots(1, 2), result)
    return fig


def similarity_figure(sim: SubspaceSimilarity) -> Figure:
    """The φ heatmap and its diagonal against the random baseline ``max(i, j)/d``."""
    fig = new_figure(13.0, 5.0)
    _draw_similarity(*fig.subplots(1, 2), sim)
    return fig


def fit_figure(result: FitResult) -> Figure:
    """:func:`fit_curves_figure` above :func:`similarity_figure` (when there is one)."""
    rows = 2 if result.similarity is not None else 1
    fig = new_figure(13.0, 5.0 * rows)
    axes = fig.subplots(rows, 2, squeeze=False)
    _draw_fit_curves(axes[0, 0], axes[0, 1], result)
    if result.similarity is not None:
        _draw_similarity(axes[1, 0], axes[1, 1], result.similarity)
    m, n = result.shape
    fig.suptitle(f"Learning ΔW = (α/r)·BA by Adam: target ({m}, {n}), α = {result.alpha:g}, "
                 f"lr = {result.lr:g}", fontweight="bold")
    return fig

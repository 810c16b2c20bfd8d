"""The seed demo's figure: the seed's curve, its theory, and the Eckart–Young optimum."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from . import COLORS, new_figure, save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..results import DemoResult

__all__ = ["demo_figure", "plot_demo"]


def demo_figure(result: DemoResult) -> Figure:
    """Two panels: left, what the seed plots (‖ΔW‖_F) against α·d/√r; right, the best
    rank-r error of W0 for every r, with the seed's ranks marked."""
    import numpy as np

    cfg = result.config
    d = cfg.hidden_size
    ranks = np.array([row.rank for row in result.rows])
    fig = new_figure(12.0, 4.8, layout=None)  # fixed margins: fast, and the text is known
    left, right = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.07, right=0.985, bottom=0.11, top=0.83, wspace=0.2)

    dense = np.geomspace(ranks.min(), ranks.max(), 200) if len(ranks) > 1 else ranks
    left.plot(dense, cfg.alpha * d / np.sqrt(dense), "--", color=COLORS["theory"],
              label="theory α·d/√r")
    left.plot(ranks, [row.delta_norm for row in result.rows], "o-", color=COLORS["seed"],
              label="seed's 'error' ‖W₀ − (W₀ + ΔW)‖ = ‖ΔW‖ (Frobenius)")
    left.set_xscale("log", base=2)
    left.set_yscale("log")
    left.set_xticks(ranks, [str(r) for r in ranks])
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _: f"{v:,.0f}")
    left.yaxis.set_major_formatter(plain)
    left.yaxis.set_minor_formatter(plain)
    left.set_xlabel("rank r")
    left.set_ylabel("Frobenius norm")
    left.set_title("The seed's curve: the size of a random update\n"
                   "ΔW = (α/r)·BA shrinks as 1/√r by construction")
    left.legend(loc="upper right")

    sigma = np.asarray(result.singular_values)
    energy = sigma**2
    tail = np.concatenate([energy[::-1].cumsum()[::-1], [0.0]])        # tail[r] = Σ_{i>r} σ_i²
    rel = np.sqrt(tail / energy.sum())
    all_r = np.arange(len(rel))
    right.plot(all_r, rel, color=COLORS["optimal"],
               label="best rank-r error ‖W₀ − W₀,ᵣ‖ / ‖W₀‖ (Frobenius, SVD)")
    right.plot(ranks, [row.optimal_relative for row in result.rows], "o",
               color=COLORS["optimal"], label="the seed's ranks")
    for row in result.rows[-1:]:
        right.annotate(f"r = {row.rank}: {row.optimal_relative:.1%} remains",
                       (row.rank, row.optimal_relative), textcoords="offset points",
                       xytext=(30, -30), arrowprops={"arrowstyle": "->"})
    right.set_xlim(0, d)
    right.set_ylim(0, 1.05)
    right.set_xlabel("rank r")
    right.set_ylabel("relative error")
    right.set_title("What rank r can express: Eckart–Young optimum for W₀\n"
                    "a Gaussian W₀ has a flat spectrum, so small r captures little")
    right.legend(loc="lower left")
    fig.suptitle(f"LoRA rank demo (d = {d}, α = {cfg.alpha:g}, seed = {result.seed})",
                 fontweight="bold")
    return fig


def plot_demo(result: DemoResult, path: str | os.PathLike[str]) -> str:
    """Draw :func:`demo_figure`; save it at ``path`` atomically (PNG, PDF or SVG by suffix)."""
    return save_png(demo_figure(result), path)

"""Figures of the studies (each function returns a matplotlib Figure).

* :func:`lr_figure`: final val loss against learning rate (log x), one curve per run kind,
  each curve's best rate marked (hollow where it sits at the grid's edge), and LoRA's best
  over full fine-tuning's in the legend.
* :func:`placement_figure`: final val loss of LoRA on attention only, MLP only and all
  linear layers at each matched parameter budget (bars, trainable parameters written on
  them), full fine-tuning as a line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import COLORS, new_figure
from .finetune import rank_colors

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..results.study import StudyResult

__all__ = ["PLACEMENT_COLORS", "lr_figure", "placement_figure"]

PLACEMENT_COLORS = {"attn": "#d95f02", "mlp": "#66a61e", "attn+mlp": COLORS["lora"]}


def lr_figure(study: StudyResult, title: str = "") -> Figure:
    """Final val loss against learning rate per curve (log x), best rates marked."""
    fig = new_figure(7.5, 4.8)
    ax = fig.subplots()
    shades = rank_colors([c.rank for c in study.curves if c.rank is not None])
    for c in study.curves:
        color = COLORS["full"] if c.rank is None else shades[c.rank]
        ratio = study.ratios.get(c.label)
        extra = "" if ratio is None else f", {ratio:.1f}× full's"
        name = "full fine-tuning" if c.rank is None else f"LoRA r={c.rank}"
        ax.plot(c.lrs, c.val_loss, "o-", color=color, lw=2.2 if c.rank is None else 1.6,
                ms=4, label=f"{name}: best {c.best_lr_fit:.2g}{extra}")
        ax.plot([c.best_lr], [c.best_val_loss], "*", ms=15, color=color,
                mfc="none" if c.at_edge else color, mew=1.5)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("final val loss")
    low = min(min(c.val_loss) for c in study.curves) if study.curves else 0.0
    high = sorted(v for c in study.curves for v in c.val_loss)
    if high:       # keep the minima readable: clip a diverging tail at the 90th percentile
        top = high[min(len(high) - 1, int(0.9 * len(high)))]
        ax.set_ylim(low - 0.05 * (top - low), top + 0.1 * (top - low))
    ax.set_title(title or "Final val loss against learning rate (★ best; hollow ★: at the "
                 "grid's edge)", wrap=True)
    ax.legend(fontsize=8)
    return fig


def placement_figure(study: StudyResult, title: str = "") -> Figure:
    """Bars of final val loss per placement at each budget, full fine-tuning as a line."""
    fig = new_figure(7.5, 4.8)
    ax = fig.subplots()
    budgets = sorted({r.budget_rank for r in study.placement if r.budget_rank is not None})
    sets = list(PLACEMENT_COLORS)
    width = 0.8 / len(sets)
    for j, t in enumerate(sets):
        rows = [next(r for r in study.placement if r.budget_rank == b and r.targets == t)
                for b in budgets]
        xs = [i + (j - (len(sets) - 1) / 2) * width for i in range(len(budgets))]
        bars = ax.bar(xs, [r.final_val_loss for r in rows], width, color=PLACEMENT_COLORS[t],
                      label={"attn": "attention only", "mlp": "MLP only",
                             "attn+mlp": "all linear layers"}[t])
        for bar, r in zip(bars, rows, strict=True):
            ax.annotate(f"r={r.rank}\n{r.trainable_params:,}", (bar.get_x() + width / 2,
                                                                 bar.get_height()),
                        ha="center", va="bottom", fontsize=7, xytext=(0, 2),
                        textcoords="offset points")
    full = next((r for r in study.placement if r.budget_rank is None), None)
    if full is not None:
        ax.axhline(full.final_val_loss, color=COLORS["full"], lw=1.5,
                   label=f"full fine-tuning ({full.final_val_loss:.3f})")
    losses = [r.final_val_loss for r in study.placement]
    if losses:
        lo, hi = min(losses), max(losses)
        ax.set_ylim(lo - 0.3 * (hi - lo + 1e-3), hi + 0.35 * (hi - lo + 1e-3))
    ax.set_xticks(range(len(budgets)), [f"budget: all layers at r={b}" for b in budgets])
    ax.set_ylabel("final val loss")
    ax.set_title(title or "LoRA placement at matched trainable parameters\n(on the bars: "
                 "rank, trainable parameters)", wrap=True)
    ax.legend(fontsize=8, loc="upper right")
    return fig

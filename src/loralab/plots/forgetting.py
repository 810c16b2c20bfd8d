"""Figures of the forgetting and intruder studies.

* :func:`forgetting_figure`: Biderman et al.'s learning–forgetting plane: each run's target
  val loss against its forgetting (source val loss after − before), full fine-tuning and every
  method and rank; beside it, the λ mitigation's path for one LoRA run in the same plane.
  Points that fall together share one label (:func:`~loralab.plots.labels.annotate_apart`).
* :func:`intruder_figure`: Shuttleworth et al.'s picture: one matrix's ``|Uᵀ U0|`` (W's top
  singular vectors against W0's) for full fine-tuning beside LoRA at each rank and rsLoRA,
  and under them the intruders per matrix against ε for every run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..method_specs import METHOD_SPECS
from . import COLORS, new_figure
from .labels import annotate_apart

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..results.forgetting import Forgetting
    from ..results.intruders import Intruders

__all__ = ["forgetting_figure", "intruder_figure"]


def _color(method: str) -> str:
    return METHOD_SPECS[method].color if method in METHOD_SPECS else COLORS["base"]


def forgetting_figure(study: Forgetting, intruders: Intruders | None = None) -> Figure:
    """Left: target val loss (y) against forgetting (x), one labelled point per run (the
    base, at forgetting 0, is named in the title: its target loss is far above the runs').
    Right (with a λ sweep): the mitigated copies of one run in that plane, each point
    labelled with its λ."""
    sweep = intruders.lambda_sweep if intruders is not None else []
    fig = new_figure(13.0 if sweep else 7.5, 5.0)
    axes = fig.subplots(1, 2) if sweep else [fig.subplots(1, 1)]
    ax = axes[0]
    seen: set[str] = set()
    for p in study.points:
        ax.scatter([p.forgetting], [p.target_val_loss], color=_color(p.method), s=36,
                   label=None if p.method in seen else p.method)
        seen.add(p.method)
    annotate_apart(ax, [(p.forgetting, p.target_val_loss, p.label) for p in study.points])
    ax.set_xlabel(f"forgetting: source val loss − base's ({study.source})")
    ax.set_ylabel("target val loss (lower: learned more)")
    ax.set_title("Learning vs forgetting, one point per run (Biderman et al., 2024); base: "
                 f"target loss {study.base_target_val_loss:.2f}, forgetting 0", wrap=True)
    ax.legend(fontsize=8)
    if sweep:
        ax2 = axes[1]
        for p in study.points:
            ax2.scatter([p.forgetting], [p.target_val_loss], color=_color(p.method), s=14,
                        alpha=0.3)
        xs = [p.forgetting for p in sweep]
        ys = [p.target_val_loss for p in sweep]
        ax2.plot(xs, ys, "-o", color=COLORS["lora"], label=f"{sweep[0].label}, mitigated")
        annotate_apart(ax2, [(p.forgetting, p.target_val_loss, f"λ={p.lam:g}")
                             for p in sweep], fontsize=8)
        ax2.set_xlabel("forgetting: source val loss − base's")
        ax2.set_ylabel("target val loss")
        ax2.set_title(f"Intruder directions scaled by λ (top {intruders.top_k}, "
                      f"ε={intruders.epsilon:g}); faint: the other runs", wrap=True)
        ax2.legend(fontsize=8)
    return fig


def intruder_figure(study: Intruders) -> Figure:
    """Top: a heatmap of ``|Uᵀ U0|`` per run (rows: W's top-k singular vectors; columns: W0's
    first ones; a dark row is an intruder). Bottom: mean intruders per matrix against ε."""
    maps = study.maps
    n = max(1, len(maps))
    fig = new_figure(max(10.0, 2.2 * n), 7.0)
    grid = fig.add_gridspec(2, n, height_ratios=(1.0, 1.2))
    image = None
    for i, m in enumerate(maps):
        ax = fig.add_subplot(grid[0, i])
        image = ax.imshow(m.similarity, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto",
                          interpolation="nearest")
        ax.set_title(m.label, fontsize=9)
        ax.grid(False)
        ax.set_xlabel("W0's singular vector", fontsize=8)
        if i == 0:
            ax.set_ylabel("W's top singular vector", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=fig.axes[:len(maps)], shrink=0.8, label="|cos|")
    ax = fig.add_subplot(grid[1, :])
    from matplotlib import colormaps

    shades = {m: [r.label for r in study.rows if r.method == m] for m in ("lora", "rslora")}
    maps_of = {"lora": "Blues", "rslora": "Purples"}
    for r in study.rows:
        same = shades.get(r.method)
        shade = (colormaps[maps_of[r.method]](0.45 + 0.55 * same.index(r.label)
                                               / max(1, len(same) - 1))
                 if same else _color(r.method))
        ax.plot(r.epsilons, r.mean_counts, marker="o", ms=3, color=shade, label=r.label,
                ls="--" if r.method == "rslora" else "-")
    ax.axvline(study.epsilon, color=COLORS["theory"], ls=":", lw=1)
    ax.set_xlabel("ε (a top vector is an intruder when its best |cos| with W0's is below ε)")
    ax.set_ylabel(f"intruders per matrix (of top {study.top_k})")
    ax.legend(fontsize=7, ncol=3, loc="upper left", bbox_to_anchor=(0.0, 1.0),
              framealpha=0.9, frameon=True)
    layer = maps[0].layer if maps else ""
    fig.suptitle(f"Intruder dimensions (Shuttleworth et al., 2024): {layer} above; "
                 f"{len(study.layers)} matrices below", fontsize=10, wrap=True)
    return fig

"""The merge methods of ``add_weighted_adapter``: how far each lands from the exact sum.

Left: each combination's relative distance ``‖ΔW_c − Σ w_i ΔW_i‖_F / ‖Σ w_i ΔW_i‖_F`` over
all layers (log scale; ``cat`` is exact, at rounding level). Right: one layer's exact sum and
what five combinations make of it, on one shared diverging colour scale, so pruned entries
show as white and the linear mix's cross terms as a different pattern.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import COLORS, new_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..lora.merge_error import MergeErrors

__all__ = ["MAPS", "merge_methods_figure"]

# the combinations drawn as heatmaps beside the exact sum (those present in the result)
MAPS: tuple[str, ...] = ("linear", "svd", "ties", "dare_linear", "ties_svd")
_FLOOR = 1e-9          # an exact result is drawn at this height (its true value is printed)


def _bars(ax: Axes, errors: MergeErrors) -> None:
    rows = list(reversed(errors.rows))
    values = [max(r.relative, _FLOOR) for r in rows]
    colors = [COLORS["optimal"] if r.relative < 1e-5 else COLORS["lora"]
              if r.combination in ("linear", "svd") else COLORS["seed"] for r in rows]
    ax.barh(range(len(rows)), values, color=colors)
    ax.set_yticks(range(len(rows)), [f"{r.combination} (r={r.rank})" for r in rows])
    ax.set_xscale("log")
    ax.set_xlim(_FLOOR / 2, 30)
    for i, r in enumerate(rows):
        ax.text(values[i] * 1.3, i, f"{r.relative:.2g}" + (f", {r.zeros:.0%} zeros"
                                                            if r.zeros > 0.01 else ""),
                va="center", fontsize=8)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=COLORS["optimal"], label="exact"),
                       Patch(color=COLORS["lora"], label="cross terms / rank cut"),
                       Patch(color=COLORS["seed"], label="pruned")],
              loc="upper center", bbox_to_anchor=(0.45, -0.12), ncol=3, fontsize=8)
    ax.set_xlabel("‖ΔW_c − Σ wᵢΔWᵢ‖_F / ‖Σ wᵢΔWᵢ‖_F  (all layers)")
    ax.set_title(f"distance from the exact sum (density {errors.density:g})")


def merge_methods_figure(errors: MergeErrors, max_side: int = 32) -> Figure:
    """Bars of every combination's distance, and heatmaps of one layer (a top-left
    ``max_side × max_side`` crop) for the exact sum and :data:`MAPS`."""
    import numpy as np

    maps = [("exact Σ wᵢΔWᵢ", errors.exact)] + [(c, errors.layer_deltas[c]) for c in MAPS
                                               if c in errors.layer_deltas]
    fig = new_figure(12.5, 5.6)
    grid = fig.add_gridspec(2, 4, width_ratios=[2.6, 1, 1, 1])
    _bars(fig.add_subplot(grid[:, 0]), errors)
    crops = [np.asarray(m[:max_side, :max_side].detach().cpu().numpy()) for _, m in maps]
    vmax = float(np.quantile(np.abs(crops[0]), 0.99)) or 1.0
    image = None
    for k, ((title, _), crop) in enumerate(zip(maps[:6], crops, strict=False)):
        ax = fig.add_subplot(grid[k // 3, 1 + k % 3])
        image = ax.imshow(crop, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    if image is not None:
        fig.colorbar(image, ax=fig.axes[1:], shrink=0.7, label=f"ΔW entries of {errors.layer}")
    terms = " + ".join(f"{w:g}·{a}" for a, w in zip(errors.adapters, errors.weights,
                                                    strict=True))
    fig.suptitle(f"add_weighted_adapter({terms}): what each combination makes of ΔW")
    return fig

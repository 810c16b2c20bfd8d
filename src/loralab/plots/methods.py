"""Figures comparing the fine-tuning methods (LoRA's variants, QLoRA, LoftQ) and DoRA's
magnitude/direction view.

* :func:`methods_figure`: val loss vs step of every method at the headline rank on the last
  target set, each from its own starting loss (QLoRA and LoftQ start on a 4-bit base), and
  each method's step time relative to full fine-tuning.
* :func:`direction_figure`: ΔM against ΔD per layer over training, a panel per traced method
  (full, LoRA, DoRA), the DoRA paper's Figure 2 measured on the tiny LM.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lora.targets import block_index
from ..method_specs import METHOD_SPECS, full_run, method_spec, runs_of
from . import COLORS, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..results import ExperimentResult, MagnitudeDirection

__all__ = ["METHOD_COLORS", "direction_figure", "methods_figure"]

METHOD_COLORS: dict[str, str] = {m: s.color for m, s in METHOD_SPECS.items()}


def methods_figure(result: ExperimentResult) -> Figure:
    """Left: val loss vs step per method (log y), each curve from its initial val loss.
    Right: step time relative to full fine-tuning, per method (bars), trainable parameters
    written on each bar."""
    from ..results import headline_runs
    from .finetune import _log_loss_axis

    runs = headline_runs(result)
    fig = new_figure(13.0, 4.8)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.axhline(result.base_val_loss, color=COLORS["base"], ls=":", lw=1.5,
                label=f"base, not fine-tuned ({result.base_val_loss:.2f})")
    for r in runs:
        start = r.initial_val_loss if r.initial_val_loss is not None else result.base_val_loss
        adapter = method_spec(r.method).is_adapter
        name = f"{r.method} r={r.rank}" if adapter else r.method
        ax1.plot([0, *r.val_steps], [start, *r.val_loss], color=METHOD_COLORS[r.method],
                 lw=1.6 if adapter else 2.2,
                 label=f"{name} ({start:.2f} → {r.final_val_loss:.3f})")
    _log_loss_axis(ax1)
    ax1.set_xlabel("fine-tuning step")
    ax1.set_ylabel(f"val loss (nats/{'token' if result.data else 'char'}, log scale)")
    ax1.set_title(f"Each method at the rank nearest 8 on {result.config.targets[-1]}\n"
                  "(start → end val loss in brackets)")
    ax1.legend(fontsize=8)
    full = full_run(runs)
    adapters = [r for r in runs if method_spec(r.method).is_adapter]
    if full is not None and adapters:
        ratios = [r.step_time_s / full.step_time_s for r in adapters]
        bars = ax2.bar(range(len(adapters)), ratios,
                       color=[METHOD_COLORS[r.method] for r in adapters])
        for bar, r in zip(bars, adapters, strict=True):
            ax2.annotate(f"{r.trainable_params:,}", (bar.get_x() + bar.get_width() / 2,
                                                     bar.get_height()),
                         ha="center", va="bottom", fontsize=7, xytext=(0, 2),
                         textcoords="offset points")
        ax2.axhline(1.0, color=COLORS["full"], lw=1.5, label="full fine-tuning = 1")
        ax2.set_xticks(range(len(adapters)), [r.method for r in adapters], rotation=30)
        ax2.set_ylabel("step time / full fine-tuning's")
        ax2.set_title(f"Step time / full fine-tuning's ({result.device}, full step "
                      f"{1e3 * full.step_time_s:.0f} ms)\non the bars: trainable parameters")
        ax2.legend(fontsize=8)
    else:
        ax2.set_axis_off()
    fig.suptitle("LoRA and its variants side by side: same ranks, targets, data and steps",
                 fontweight="bold")
    return fig


def direction_figure(md: MagnitudeDirection) -> Figure:
    """ΔM (y) against ΔD (x) of ``md.module`` in every layer at every evaluation step, one
    panel per traced method, a colour per layer, later steps darker, a least-squares line;
    each title gives Pearson's r and the DoRA paper's sign for that method."""
    import numpy as np
    from matplotlib import colormaps

    methods = [m for m, s in METHOD_SPECS.items()
               if s.paper_sign is not None and m in md.correlation]
    fig = new_figure(4.6 * len(methods), 4.4)
    axes = fig.subplots(1, len(methods), squeeze=False)[0]
    layers = sorted({p.layer for p in md.points}, key=lambda s: (len(s), s))
    cmap = colormaps["viridis"]
    for ax, method in zip(axes, methods, strict=True):
        pts = runs_of(md.points, method)
        steps = max(p.step for p in pts)
        for i, layer in enumerate(layers):
            mine = [p for p in pts if p.layer == layer]
            color = cmap(i / max(1, len(layers) - 1))
            ax.scatter([p.delta_d for p in mine], [p.delta_m for p in mine], s=18,
                       color=color, alpha=[0.3 + 0.7 * p.step / steps for p in mine],
                       label=f"layer {block_index(layer)}")
        x = np.array([p.delta_d for p in pts])
        y = np.array([p.delta_m for p in pts])
        if len(pts) >= 2 and np.ptp(x) > 0:
            k, c = np.polyfit(x, y, 1)
            xs = np.linspace(x.min(), x.max(), 2)
            ax.plot(xs, k * xs + c, color="k", lw=1, ls="--")
        r = md.correlation[method]
        ok = md.reproduced.get(method)
        mark = "" if ok is None else (" ✓" if ok else " ✗")
        ax.set_title(f"{method}: r = {r:+.2f} (paper: {METHOD_SPECS[method].paper_slope}){mark}")
        ax.set_xlabel("ΔD = mean(1 − cos(W_n, W0_n))")
        ax.set_ylabel("ΔM = mean |‖W_n‖ − ‖W0_n‖|")
        ax.ticklabel_format(axis="both", style="sci", scilimits=(-2, 3))
    if len(layers) <= 8:
        axes[0].legend(fontsize=7, loc="upper left")
    else:                       # a deep model: the layer as a colour scale, not 30 entries
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        blocks = [block_index(x) for x in layers]
        bar = fig.colorbar(ScalarMappable(Normalize(min(blocks), max(blocks)), cmap),
                           ax=list(axes), fraction=0.03, pad=0.02)
        bar.set_label("layer")
    rank = f" r={md.rank}" if md.rank else ""
    fig.suptitle(f"DoRA's magnitude/direction view: {md.module} of every layer over training "
                 f"(adapters{rank} on {md.targets}; later steps darker)", fontweight="bold",
                 wrap=True)
    return fig


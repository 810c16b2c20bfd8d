"""Figures of the fine-tuning experiment (each function returns a matplotlib Figure).

* :func:`convergence_figure`: val loss vs step, one curve per run, a panel per target set.
* :func:`bridge_figure`: the full update's spectrum, ΔW_full truncated to rank r vs LoRA at
  rank r, and α/r vs α/√r.
* :func:`cost_figure`: val loss against trainable parameters, and step time / optimizer
  state relative to full fine-tuning.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..method_specs import METHOD_SPECS, full_run, method_spec, runs_of
from . import COLORS, new_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..results import Analysis, ExperimentResult, RunResult

__all__ = ["bridge_figure", "convergence_figure", "cost_figure", "rank_colors"]

RSLORA_COLOR = METHOD_SPECS["rslora"].color   # rsLoRA (α/√r), beside LoRA's blue (α/r)
_MODULE_COLORS = {"q_proj": "#1b9e77", "k_proj": "#d95f02", "v_proj": "#7570b3",
                  "o_proj": "#e7298a", "up_proj": "#66a61e", "down_proj": "#a6761d"}


def rank_colors(ranks: list[int]) -> dict[int, tuple]:
    """One shade of the LoRA colour per rank, light (small r) to dark (large r)."""
    from matplotlib.colors import LinearSegmentedColormap

    cmap = LinearSegmentedColormap.from_list("lora", ["#a6cee3", COLORS["lora"], "#08306b"])
    n = max(1, len(ranks) - 1)
    return {r: cmap(i / n) for i, r in enumerate(sorted(ranks))}


def _curve(run: RunResult, base_loss: float) -> tuple[list[int], list[float]]:
    return [0, *run.val_steps], [base_loss, *run.val_loss]


_FINE_TICKS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.2, 1.5, 2, 2.5,
               3, 4, 5, 6, 8, 10)
_COARSE_TICKS = (0.1, 0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 5, 7, 10)


def _log_loss_axis(ax: Axes) -> None:
    """Log-scale y with plain-number ticks at round values inside the current limits (at
    least two: a range narrower than the round values gets ticks of its own)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator

    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    ticks = [t for t in _FINE_TICKS if lo <= t <= hi]
    if len(ticks) > 9:
        ticks = [t for t in _COARSE_TICKS if lo <= t <= hi]
    if len(ticks) < 2:            # a narrow range (3.61..3.70): round values of its own
        ticks = [float(f"{t:.6g}") for t in MaxNLocator(nbins=5).tick_values(lo, hi)
                 if lo <= t <= hi]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def convergence_figure(result: ExperimentResult) -> Figure:
    """Val loss vs step (log scale), a panel per target set: full FT, LoRA at each rank
    (light -> dark = small -> large r), rsLoRA dashed, the base as a dotted line."""
    cfg = result.config
    panels = list(cfg.targets)
    fig = new_figure(6.0 * len(panels), 4.8)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    shades = rank_colors(list(cfg.ranks))
    full = full_run(result.runs)
    base = result.base_val_loss
    for ax, target in zip(axes, panels, strict=True):
        ax.axhline(base, color=COLORS["base"], ls=":", lw=1.5,
                   label=f"base, not fine-tuned ({base:.2f})")
        if full is not None:
            x, y = _curve(full, base)
            ax.plot(x, y, color=COLORS["full"], lw=2.5, label=f"full FT, "
                    f"{full.trainable_params:,} params ({full.final_val_loss:.3f})")
        for r in result.runs:
            if not method_spec(r.method).sweep or r.targets != target:
                continue
            x, y = _curve(r, base)
            rs = " rsLoRA α/√r" if r.rslora else ""
            ax.plot(x, y, color=RSLORA_COLOR if r.rslora else shades.get(r.rank), lw=1.6,
                    ls=("--" if r.rank == max(cfg.ranks) else ":") if r.rslora else "-",
                    label=f"LoRA r={r.rank}{rs}, {r.trainable_params:,} "
                          f"({r.final_val_loss:.3f})")
        _log_loss_axis(ax)
        ax.set_xlabel("fine-tuning step")
        ax.set_title(f"LoRA on {target}")
        ax.legend(fontsize=8, loc="upper right", bbox_to_anchor=(1.0, 0.93))
    name = (result.data or {}).get("name", "pig-latin")
    task = "Pig Latin" if name == "pig-latin" else name
    unit = "char" if not result.data else "token"
    what = os.path.basename(cfg.model.rstrip("/\\")) if cfg.model else \
        "an English-pretrained tiny LM"
    axes[0].set_ylabel(f"val loss on {task} (nats/{unit}, log scale)")
    fig.suptitle(f"Fine-tuning {what} on {task}: full vs LoRA ({cfg.preset} preset, final "
                 "val loss in brackets)", fontweight="bold", wrap=True)   # wrapped when drawn
    return fig


def _draw_update_spectra(ax: Axes, a: Analysis) -> None:
    """Cumulative energy ``Σ_{i≤r}σ_i² / Σ_i σ_i²`` of ΔW_full, one curve per layer (a colour
    per module), a dot at the rank holding 90 % of it."""
    import numpy as np

    seen: set[str] = set()
    extra = iter(["#1f78b4", "#ff7f00", "#6a3d9a", "#b15928", "#e31a1c", "#33a02c"])
    colors = dict(_MODULE_COLORS)
    for s in a.spectra:                  # another model's module names: the next colour
        if s.module not in colors:
            colors[s.module] = next(extra, "k")
    for s in a.spectra:
        e = np.cumsum(np.square(s.singular_values))
        e = e / e[-1] if e[-1] > 0 else e
        lab = s.module if s.module not in seen else None
        seen.add(s.module)
        color = colors[s.module]
        ax.plot(np.arange(1, len(e) + 1), e, color=color, lw=1.2, alpha=0.85, label=lab)
        ax.plot([s.rank90], [e[s.rank90 - 1]], "o", color=color, ms=4)
    ax.axhline(0.9, color=COLORS["theory"], ls="--", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("rank r")
    ax.set_ylabel(r"energy kept $\sum_{i\leq r}\sigma_i^2 / \sum_i \sigma_i^2$")
    ax.set_title(r"Spectrum of the full update $\Delta W_{full} = W_{FT} - W_0$" + "\n"
                 "one curve per layer; dots: the rank holding 90 % of its energy")
    ax.legend(fontsize=8, loc="lower right", ncols=2)


def _draw_truncation(ax: Axes, result: ExperimentResult) -> None:
    """Val loss of ``W0 + [ΔW_full]_r`` and of LoRA trained at rank r, per target set, with
    the untruncated ``W0 + ΔW_full`` and full fine-tuning as lines."""
    a, cfg = result.analysis, result.config
    styles = ["o", "s", "^", "D"]
    for i, t in enumerate(cfg.targets):
        rows = [r for r in a.truncation if r.targets == t and r.rank is not None]
        ranks = [r.rank for r in rows]
        ls = "-" if i == len(cfg.targets) - 1 else "--"
        ax.plot(ranks, [r.val_loss_truncated for r in rows], marker=styles[i % 4],
                color=COLORS["optimal"], ls=ls, label=rf"$W_0 + [\Delta W_{{full}}]_r$ on {t}")
        ax.plot(ranks, [r.val_loss_lora for r in rows], marker=styles[i % 4],
                color=COLORS["lora"], ls=ls, label=f"LoRA trained at rank r on {t}")
    full = result.run("full")
    whole = [r for r in a.truncation if r.rank is None and r.targets == cfg.targets[-1]]
    if whole:
        ax.axhline(whole[0].val_loss_truncated, color=COLORS["optimal"], ls=":", lw=1.5,
                   label=rf"$W_0 + \Delta W_{{full}}$ on {cfg.targets[-1]}, untruncated "
                         f"({whole[0].val_loss_truncated:.3f})")
    ax.axhline(full.final_val_loss, color=COLORS["full"], lw=2,
               label=f"full fine-tuning, all weights ({full.final_val_loss:.3f})")
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(cfg.ranks), [str(r) for r in cfg.ranks])
    _log_loss_axis(ax)
    ax.set_xlabel("rank r")
    ax.set_ylabel("val loss (log scale)")
    ax.set_title("Truncated full update vs LoRA at the same rank\n"
                 f"(base, not fine-tuned: {result.base_val_loss:.2f})")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2)


def _draw_rslora(ax: Axes, result: ExperimentResult) -> None:
    """Val loss vs step at scale ``α/r`` (LoRA) and ``α/√r`` (rsLoRA), a line style per rank."""
    a, cfg = result.analysis, result.config
    if not a.rslora:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no α/√r comparison in this run\n(add rslora to --methods)",
                ha="center", va="center", transform=ax.transAxes)
        return
    full = result.run("full")
    styles = ["-", "--", ":", "-."]
    for i, row in enumerate(a.rslora):
        for rs, color in ((False, COLORS["lora"]), (True, RSLORA_COLOR)):
            run = result.lora_run(row.rank, row.targets, rslora=rs)
            rule = f"α/√r = {run.scaling:.3g}" if rs else f"α/r = {run.scaling:.3g}"
            ax.plot(run.val_steps, run.val_loss, ls=styles[i % 4], color=color, lw=1.8,
                    label=f"r={row.rank}, {rule} ({run.final_val_loss:.3f})")
    ax.axhline(full.final_val_loss, color=COLORS["full"], lw=1.5,
               label=f"full fine-tuning ({full.final_val_loss:.3f})")
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("val loss (log scale)")
    _log_loss_axis(ax)
    ax.set_title(f"Scale α/r (LoRA) vs α/√r (rsLoRA), α = {cfg.lora_alpha:g}\n"
                 f"on {a.rslora[0].targets}, at the larger ranks")
    ax.legend(fontsize=8)


def bridge_figure(result: ExperimentResult) -> Figure:
    """Three panels: cumulative energy of ΔW_full per layer; val loss of W0 + [ΔW_full]_r vs
    LoRA at rank r; α/r vs α/√r convergence."""
    a, cfg = result.analysis, result.config
    fig = new_figure(17.0, 4.9)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    _draw_update_spectra(ax1, a)
    r90 = [s.rank90 for s in a.spectra]
    width = min(a.spectra[0].shape)
    _draw_truncation(ax2, result)
    _draw_rslora(ax3, result)
    kept = [r for r in a.truncation if r.targets == cfg.targets[-1] and r.rank is not None]
    head = (f"; rank {kept[-1].rank} keeps {100 * kept[-1].energy_kept:.0f} % of it"
            if kept else "")
    fig.suptitle(f"The bridge to the SVD: 90 % of the full update's energy lies in rank "
                 f"{min(r90)}–{max(r90)} of {width}{head}", fontweight="bold")
    return fig


def _annotate_rank(ax: Axes, run: RunResult, dy: int, **style: object) -> None:
    """``r=<rank>`` beside the run's point ``(trainable params, final val loss)``."""
    ax.annotate(f"r={run.rank}", (run.trainable_params, run.final_val_loss), fontsize=7,
                xytext=(4, dy), textcoords="offset points", **style)


def _draw_quality(ax: Axes, result: ExperimentResult) -> None:
    """Final val loss against trainable parameters (log-log): full FT as a star, LoRA per
    target set (a marker each, light -> dark = small -> large r), rsLoRA in purple."""
    cfg = result.config
    full = result.run("full")
    shades = rank_colors(list(cfg.ranks))
    markers = {t: m for t, m in zip(cfg.targets, "osD^v", strict=False)}
    ax.plot([full.trainable_params], [full.final_val_loss], "*", ms=14, color=COLORS["full"],
            label="full fine-tuning")
    for t in cfg.targets:
        runs = [r for r in runs_of(result.runs, "lora") if r.targets == t]
        ax.plot([r.trainable_params for r in runs], [r.final_val_loss for r in runs], "-",
                color=COLORS["lora"], lw=1, alpha=0.6)
        for r in runs:
            ax.plot(r.trainable_params, r.final_val_loss, markers[t], ms=7, color=shades[r.rank])
            _annotate_rank(ax, r, 4)
        ax.plot([], [], markers[t], color=COLORS["lora"], label=f"LoRA on {t}")
        rs = [r for r in runs_of(result.runs, "rslora") if r.targets == t]
        if rs:
            ax.plot([r.trainable_params for r in rs], [r.final_val_loss for r in rs],
                    markers[t], ms=7, color=RSLORA_COLOR, label=f"rsLoRA (α/√r) on {t}")
            for r in rs:
                _annotate_rank(ax, r, -10, color=RSLORA_COLOR)
    ax.set_xscale("log")
    _log_loss_axis(ax)
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel("final val loss (log scale)")
    ax.set_title(f"Quality per trainable parameter (base: {result.base_val_loss:.2f})")
    ax.legend(fontsize=8)


def _draw_relative_cost(ax: Axes, result: ExperimentResult) -> None:
    """Bars per LoRA run: step time and optimizer state over full fine-tuning's (log y),
    against the targets 0.8 and 1/20."""
    full = result.run("full")
    lora = [r for r in result.runs if method_spec(r.method).sweep]
    x = range(len(lora))
    step = [r.step_time_s / full.step_time_s for r in lora]
    optim = [r.optimizer_state_bytes / full.optimizer_state_bytes for r in lora]
    w = 0.4
    ax.bar([i - w / 2 for i in x], step, w, color=COLORS["lora"], label="step time / full")
    ax.bar([i + w / 2 for i in x], optim, w, color=COLORS["learned"],
           label="optimizer state / full")
    ax.axhline(1.0, color=COLORS["full"], lw=1.5, label="full fine-tuning = 1")
    ax.axhline(0.8, color=COLORS["theory"], ls="--", lw=1, label="target step time 0.8")
    ax.axhline(0.05, color=COLORS["theory"], ls=":", lw=1, label="target optimizer 1/20")
    ax.set_yscale("log")
    ax.set_xticks(list(x), [r.label.replace("rslora-", "rs-").replace("lora-", "")
                            for r in lora], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("relative to full fine-tuning (log scale)")
    ax.set_title(f"Cost relative to full fine-tuning ({result.device}; "
                 f"full step {1e3 * full.step_time_s:.0f} ms)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def cost_figure(result: ExperimentResult) -> Figure:
    """Val loss vs trainable parameters (log x), and step time / optimizer state of every
    LoRA run relative to full fine-tuning."""
    fig = new_figure(13.0, 4.8)
    ax1, ax2 = fig.subplots(1, 2)
    _draw_quality(ax1, result)
    _draw_relative_cost(ax2, result)
    fig.suptitle("What LoRA saves: parameters and optimizer state; step time only at width",
                 fontweight="bold")
    return fig

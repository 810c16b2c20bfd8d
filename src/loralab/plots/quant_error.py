"""The figure of ``loralab quant``: what a rank-r adapter wins back of the quantization error.

Three panels from a :class:`~loralab.lowrank.quant_error.QuantAnalysis`: LoftQ's residual
``‖W − Q − s·B A‖_F`` against the rank (one line per number of rounds) under QLoRA's start
``‖W − Q(W)‖_F`` (B = 0); the residual against the rounds, per rank; and the singular
values of ``W − Q(W)`` beside those of a random matrix of its shape and RMS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import COLORS, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..lowrank.quant_error import QuantAnalysis

__all__ = ["quant_figure"]


def quant_figure(a: QuantAnalysis) -> Figure:
    """Three panels (see the module doc); relative errors ``/‖W‖_F`` on the y axes."""
    fig = new_figure(15, 4.6)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    ranks = sorted({r.rank for r in a.rows})
    iters = sorted({r.iters for r in a.rows})
    norm, start = a.frobenius_norm, a.quant_error / a.frobenius_norm
    shown = sorted({1, iters[-1]} | ({iters[len(iters) // 2]} if len(iters) > 2 else set()))
    for t in shown:
        ax1.plot(ranks, [a.residual(r, t) / norm for r in ranks], "o-", lw=1.8,
                 label=f"LoftQ, {t} round{'s' if t > 1 else ''}")
    ax1.axhline(start, color=COLORS["theory"], ls="--",
                label=f"QLoRA start (B = 0): {start:.4f}")
    ax1.set_xscale("log", base=2)
    ax1.set_xticks(ranks, [str(r) for r in ranks])
    ax1.set_xlabel("adapter rank r")
    ax1.set_ylabel("‖W − Q − s·BA‖_F / ‖W‖_F")
    ax1.set_title(f"error left after LoftQ ({a.bits}-bit base)")
    label = a.label if len(a.label) <= 70 else "…" + a.label[-69:]
    fig.suptitle(f"{label}  ({a.shape[0]}×{a.shape[1]})", fontsize=11)
    ax1.legend(fontsize=8)
    for r in ranks:
        ax2.plot(iters, [a.residual(r, t) / norm for t in iters], "o-", lw=1.5, label=f"r={r}")
    ax2.axhline(start, color=COLORS["theory"], ls="--", label="QLoRA start")
    ax2.set_xticks(iters, [str(t) for t in iters])
    ax2.set_xlabel("LoftQ rounds")
    ax2.set_ylabel("relative error")
    ax2.set_title("error against rounds")
    ax2.legend(fontsize=8, ncols=2)
    k = range(1, len(a.error_singular_values) + 1)
    ax3.plot(k, a.error_singular_values, color=COLORS["lora"], lw=1.8, label="σᵢ(W − Q(W))")
    ax3.plot(k, a.random_singular_values, color="0.4", ls="--", lw=1.5,
             label="random matrix, same shape and RMS")
    for r in ranks:
        ax3.axvline(r, color="0.85", lw=0.8, zorder=0)
    ax3.set_xscale("log")
    ax3.set_xlabel("index i")
    ax3.set_ylabel("singular value")
    ax3.set_title("is the quantization error low-rank?")
    ax3.legend(fontsize=8)
    return fig

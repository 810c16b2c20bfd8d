"""The text tables of the low-rank commands, as a notebook can print them.

``loralab svd``, ``fit``, ``spectrum``, ``quant`` and ``heatmap`` print exactly these strings;
each takes the command's result type (:class:`SvdAnalysis`, :class:`FitResult`,
:class:`SpectrumComparison`, :class:`QuantAnalysis`, :class:`HeatmapAnalysis`) and returns the
text, with no trailing newline. Formatting only: every number is computed by the analyses.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .theory import gaussian_optimal_error, mp_edges

if TYPE_CHECKING:
    from .analysis import SpectrumComparison, SvdAnalysis
    from .fit import FitResult
    from .heatmap import HeatmapAnalysis
    from .quant_error import QuantAnalysis

__all__ = ["format_fit", "format_heatmap", "format_quant", "format_spectrum", "format_svd"]


def format_svd(analysis: SvdAnalysis) -> str:
    """``loralab svd``'s text: the per-rank table (the seed's random ``‖ΔW‖_F`` beside its
    theory, the best ``‖W − W_r‖_F``, relative, ``σ_(r+1)``; the quarter-circle theory for
    a Gaussian matrix), the Eckart–Young check and the randomized path's error."""
    sw = analysis.sweep
    m, n = sw.shape
    lines = [
        f"loralab svd: {analysis.label}, shape ({m}, {n}), ‖W‖_F = {sw.frobenius_norm:,.6g}; "
        "one SVD gives every rank",
        f"seed's random update: ΔW = (α/r)·B A, α = {analysis.alpha:g}, B: ({m}, r), "
        f"A: (r, {n}) ~ N(0, 1)", ""]
    theory = None
    if analysis.gaussian:
        theory = gaussian_optimal_error(m, n, std=sw.frobenius_norm / (m * n) ** 0.5)
    head = (f"{'rank':>5}  {'random ‖ΔW‖_F (theory ± std)':>30}  {'best ‖W−W_r‖_F':>15}  "
            f"{'relative':>8}  {'σ_(r+1) (spectral)':>18}")
    lines.append(head + (f"  {'quarter-circle theory':>21}" if theory is not None else ""))
    for i, r in enumerate(sw.ranks):
        rnd = analysis.random[i]
        row = (f"{r:>5}  {f'{rnd.delta_norm:,.1f} ({rnd.theory:,.1f} ± {rnd.theory_std:,.1f})':>30}"
               f"  {sw.optimal_error[i]:>15,.4f}  "
               f"{_ratio(sw.optimal_error[i], sw.frobenius_norm, '.2%'):>8}  "
               f"{sw.spectral_error[i]:>18,.4f}")
        lines.append(row + (f"  {theory[r]:>21,.4f}" if theory is not None else ""))
    lines += ["", "The seed's 'error' is the size of a random update; it falls as 1/√r only "
              "because of the α/r scale.", "What rank r can express is the best rank-r error."]
    if analysis.check is not None:
        ck = analysis.check
        lines += ["", f"Eckart–Young check ({ck.dtype}; R = W − W_r formed from the SVD "
                  "factors and measured):",
                  f"{'rank':>5}  {'‖R‖_F²':>16}  {'Σ_(i>r) σ_i²':>16}  {'|diff|/‖W‖_F²':>13}  "
                  f"{'‖R‖_2':>12}  {'σ_(r+1)':>12}  {'|diff|/σ_1':>10}"]
        for row in ck.rows:
            spec = (f"{row.spectral:>12,.5f}" if row.spectral is not None else f"{'-':>12}")
            sd = (f"{row.spectral_diff:>10.2e}" if row.spectral_diff is not None
                  else f"{'-':>10}")
            lines.append(f"{row.rank:>5}  {row.frobenius_sq:>16,.6f}  "
                         f"{row.frobenius_sq_formula:>16,.6f}  {row.frobenius_diff:>13.2e}  "
                         f"{spec}  {row.spectral_formula:>12,.5f}  {sd}")
        worst_f = max(ck.rows, key=lambda row: row.frobenius_diff)
        text = (f"largest discrepancy: Frobenius {ck.max_frobenius_diff:.2e} of ‖W‖_F² "
                f"(rank {worst_f.rank})")
        if ck.max_spectral_diff is not None:
            worst_s = max(ck.rows, key=lambda row: row.spectral_diff)
            text += f", spectral {ck.max_spectral_diff:.2e} of σ_1 (rank {worst_s.rank})"
        lines.append(text)
    if analysis.randomized is not None and analysis.comparison is not None:
        cmp = analysis.comparison
        q = len(analysis.randomized.singular_values)
        lines += ["", f"randomized path (torch.svd_lowrank, q = {q}, 2 power iterations) "
                  "against the exact SVD:",
                  f"  best-error relative difference: max {cmp.max_optimal_rel_diff:.2e} over the "
                  "ranks (" + ", ".join(f"r={r}: {d:.1e}" for r, d in
                                        zip(cmp.ranks, cmp.optimal_rel_diff, strict=True)) + ")",
                  f"  top-{max(cmp.ranks)} singular values: max relative difference "
                  f"{cmp.max_singular_value_rel_diff:.2e}",
                  "  (accurate when the spectrum decays beyond the ranks; a flat Gaussian "
                  "spectrum is its worst case)"]
    return "\n".join(lines)


def format_fit(result: FitResult, label: str) -> str:
    """``loralab fit``'s text for the target named ``label``: per rank the learned
    ``‖W − ΔW‖_F``, the Eckart–Young optimum and their ratio, then the φ summary."""
    m, n = result.shape
    fits = result.fits
    lines = [f"loralab fit: target {label}, shape ({m}, {n}), ‖W‖_F = "
             f"{result.frobenius_norm:,.6g}; ΔW = (α/r)·B A, α = {result.alpha:g}, Adam "
             f"lr = {result.lr:g}, {fits[0].steps} steps, B = 0 at start", "",
             f"{'rank':>5}  {'steps':>6}  {'learned ‖W−ΔW‖_F':>17}  "
             f"{'optimal (Eckart–Young)':>22}  {'learned/optimal':>15}"]
    for f in fits:
        ratio = f"{f.ratio:>15.5f}" if math.isfinite(f.ratio) else f"{'n/a (floor 0)':>15}"
        lines.append(f"{f.rank:>5}  {f.steps:>6}  {f.learned_error:>17,.6g}  "
                     f"{f.optimal_error:>22,.6g}  {ratio}")
    finite = [f for f in fits if math.isfinite(f.ratio)]
    if finite:
        worst = max(finite, key=lambda f: f.ratio)
        lines.append(f"largest learned/optimal: {worst.ratio:.5f} (rank {worst.rank}); "
                     + ("all within 1 % of the optimum" if worst.ratio <= 1.01 else
                        "above 1.01: more --steps, or ranks past the signal's converge slowly"
                        if worst.ratio <= 2 else "far above the optimum: the fit did not "
                        "converge; lower --lr or --alpha, or give more --steps"))
    if len(finite) < len(fits):
        lines.append("n/a: at full rank the optimum is exact (error 0), so the ratio is "
                     "undefined; the learned error is shown")
    sim = result.similarity
    if sim is not None:
        d = sim.d_in
        r1, r2 = sim.rank_1, sim.rank_2
        lines += ["", f"subspace similarity φ(A_{r1}, A_{r2}, i, j) = ‖U_iᵀ U_j‖_F² / min(i, j) "
                  f"(top right singular vectors of A, d = {d}):",
                  f"  learned:  φ({r1}, {r2}) = {sim.phi[-1][-1]:.4f}, φ(1, 1) = "
                  f"{sim.phi[0][0]:.4f}, mean over all (i, j) = "
                  f"{sum(map(sum, sim.phi)) / (r1 * r2):.4f}",
                  f"  at init:  φ({r1}, {r2}) = {sim.phi_init[-1][-1]:.4f}; random baseline "
                  f"max(i, j)/d = {r2 / d:.4f}"]
    return "\n".join(lines)


def format_spectrum(comparison: SpectrumComparison) -> str:
    """``loralab spectrum``'s text: one row per matrix (shape, ‖W‖_F, the energy ranks, the
    energy kept at each rank), the Marchenko–Pastur edges of the first Gaussian one."""
    spectra, ranks = comparison.spectra, comparison.ranks
    keys = list(spectra[0].energy_ranks)
    lines = ["loralab spectrum: energy ‖W_r‖_F² / ‖W‖_F² kept by the top r singular values",
             "",
             f"{'matrix':<34} {'shape':>12} {'‖W‖_F':>12}  "
             + "  ".join(f"{'r(' + k + ')':>8}" for k in keys) + "  "
             + "  ".join(f"{'r=' + str(r):>7}" for r in ranks)]
    for sp in spectra:
        kept = [sp.cumulative_energy[r - 1] if r <= len(sp.cumulative_energy) else 1.0
                for r in ranks]
        shape = f"{sp.shape[0]}×{sp.shape[1]}"
        zero = sp.frobenius_norm == 0                      # no energy: shares are n/a
        lines.append(f"{sp.label[:34]:<34} {shape:>12} {sp.frobenius_norm:>12,.5g}  "
                     + "  ".join(f"{'n/a' if zero else sp.energy_ranks[k]:>8}" for k in keys)
                     + "  " + "  ".join(f"{'n/a' if zero else format(e, '.1%'):>7}"
                                        for e in kept))
    gauss = [sp for sp in spectra if sp.gaussian]
    if gauss:
        sp = gauss[0]
        lo, hi = mp_edges(*sp.shape, std=sp.frobenius_norm / (sp.shape[0] * sp.shape[1]) ** 0.5)
        s = sp.singular_values
        lines += ["", f"Marchenko–Pastur edges for the Gaussian {sp.shape[0]}×{sp.shape[1]}: "
                  f"σ in [{lo:,.3f}, {hi:,.3f}] (theory) vs [{s[-1]:,.3f}, {s[0]:,.3f}] "
                  "(measured)"]
    lines += ["", "A flat spectrum needs most ranks for most of the energy; a decaying one "
              "(what LoRA bets a fine-tuning update has) needs few."]
    return "\n".join(lines)


def format_quant(a: QuantAnalysis) -> str:
    """``loralab quant``'s text: ``‖W − Q(W)‖_F``, then one row per rank with LoftQ's
    residual after each round, and the error's top singular value against a random one's."""
    iters = sorted({r.iters for r in a.rows})
    ranks = sorted({r.rank for r in a.rows})
    lines = [f"loralab quant: {a.bits}-bit {a.label} {a.shape[0]}×{a.shape[1]}, "
             f"‖W‖_F = {a.frobenius_norm:,.4g}",
             f"QLoRA start (B = 0): ‖W − Q(W)‖_F = {a.quant_error:,.4g} "
             f"({_ratio(a.quant_error, a.frobenius_norm, '.4f')} of ‖W‖_F)", "",
             "LoftQ residual ‖W − Q − s·B A‖_F / ‖W‖_F after each round:",
             f"{'rank':>6}  " + "  ".join(f"{'t=' + str(t):>8}" for t in iters)]
    for r in ranks:
        lines.append(f"{r:>6}  " + "  ".join(
            f"{_ratio(a.residual(r, t), a.frobenius_norm, '.4f'):>8}" for t in iters))
    top, rand = a.error_singular_values[0], a.random_singular_values[0]
    lines += ["", f"largest singular value of W − Q(W): {top:,.4g}, against {rand:,.4g} for a "
              "random matrix of its shape and RMS (close: the error is noise-like, and rank r "
              "wins little back; far above: it has structure a low-rank adapter can take)"]
    return "\n".join(lines)


def _ratio(a: float, b: float, fmt: str) -> str:
    """``a / b`` formatted, or ``n/a`` when ``b`` is 0 (an all-zero W0 or ΔW)."""
    return format(a / b, fmt) if b > 0 else "n/a"


def format_heatmap(h: HeatmapAnalysis) -> str:
    """``loralab heatmap``'s text: the norms of ``W0`` and ``ΔW``, then per rank
    ``‖ΔW − [ΔW]_r‖_F`` and its share of ``‖ΔW‖_F`` and of ``‖W0‖_F``."""
    sweep, block, w0_norm = h.sweep, h.block, h.w0_norm
    lines = [f"loralab heatmap: W0 = {h.w0_label}, ΔW = {h.delta_label}, shape {h.shape}",
             f"‖W0‖_F = {w0_norm:,.5g}, ‖ΔW‖_F = {sweep.frobenius_norm:,.5g} "
             f"(ratio {_ratio(sweep.frobenius_norm, w0_norm, '.3f')})"
             + (f"; shown as {block}×{block} block means" if block > 1 else ""), "",
             f"{'rank':>5}  {'‖ΔW − [ΔW]_r‖_F':>17}  {'of ‖ΔW‖_F':>9}  {'of ‖W0‖_F':>9}"]
    for r, err in zip(sweep.ranks, sweep.optimal_error, strict=True):
        lines.append(f"{r:>5}  {err:>17,.5g}  {_ratio(err, sweep.frobenius_norm, '.2%'):>9}  "
                     f"{_ratio(err, w0_norm, '.2%'):>9}")
    return "\n".join(lines)


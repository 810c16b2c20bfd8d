"""Best rank-r approximation (truncated SVD) against the seed's random BA, for every rank.

For each rank r: the seed's random update's size ‖ΔW‖_F (ΔW = (α/r)·B A, with its theory
α·sqrt(m·n/r)), the Eckart–Young optimum ‖W − W_r‖_F = sqrt(Σ_{i>r} σ_i²), the relative error
‖W − W_r‖_F / ‖W‖_F and the spectral error σ_{r+1}, all from ONE SVD of W. Then the
Eckart–Young check: W − W_r formed explicitly and measured against both formulas. With
--randomized, also the top singular values from torch.svd_lowrank and their error.

example:
  loralab svd --hidden-size 512 --ranks 2,4,8,16,32 --out svd.png --json svd.json
  loralab svd --input weights.safetensors:layers.0.q_proj.weight --randomized
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ._args import alpha_float
from ._matrix import add_matrix_arguments, add_output_arguments

if TYPE_CHECKING:
    from ..lowrank import SvdAnalysis

HELP = "best rank-r error (one SVD) vs the seed's random BA, with the Eckart–Young check"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Matrix, ranks, α, check options and outputs."""
    add_matrix_arguments(parser)
    parser.add_argument("--alpha", type=alpha_float, default=16.0,
                        help="LoRA scale α of the seed's random ΔW = (α/r)·BA (default 16)")
    parser.add_argument("--no-check", action="store_true",
                        help="skip the explicit Eckart–Young check (it costs one SVD of "
                             "W − W_r per rank for the spectral norm)")
    parser.add_argument("--randomized", action="store_true",
                        help="also run torch.svd_lowrank (top max(ranks)+10 values) and print "
                             "its error against the exact SVD")
    add_output_arguments(parser, "svd.png")


def format_report(analysis: SvdAnalysis) -> str:
    """The per-rank table, the Eckart–Young check and the randomized path's error."""
    from ..lowrank.theory import gaussian_optimal_error

    sw = analysis.sweep
    m, n = sw.shape
    lines = [
        f"loralab svd: {analysis.label}, shape ({m}, {n}), ‖W‖_F = {sw.frobenius_norm:,.6g}; "
        "one SVD gives every rank",
        f"seed's random update: ΔW = (α/r)·B A, α = {analysis.alpha:g}, B: ({m}, r), "
        f"A: (r, {n}) ~ N(0, 1)",
        "",
    ]
    theory = None
    if analysis.gaussian:
        theory = gaussian_optimal_error(m, n, std=sw.frobenius_norm / (m * n) ** 0.5)
    head = (f"{'rank':>5}  {'random ‖ΔW‖_F (theory ± std)':>30}  {'best ‖W−W_r‖_F':>15}  "
            f"{'relative':>8}  {'σ_(r+1) (spectral)':>18}")
    lines.append(head + (f"  {'quarter-circle theory':>21}" if theory is not None else ""))
    for i, r in enumerate(sw.ranks):
        rnd = analysis.random[i]
        row = (f"{r:>5}  {f'{rnd.delta_norm:,.1f} ({rnd.theory:,.1f} ± {rnd.theory_std:,.1f})':>30}"
               f"  {sw.optimal_error[i]:>15,.4f}  {sw.relative_error[i]:>8.2%}  "
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


def run(args: argparse.Namespace) -> int:
    """Check outputs, get the matrix, analyse, print, save."""
    from ..lowrank import analyze_svd, check_ranks
    from ..plots.lowrank import svd_figure
    from ._matrix import check_finite, claim_outputs, matrix_from_args, write_outputs

    with claim_outputs(args, "svd"):
        mat = matrix_from_args(args, copies=6)
        ranks = check_ranks(args.ranks, tuple(mat.tensor.shape))
        seed = mat.generator if mat.generator is not None else args.seed
        analysis = analyze_svd(mat.tensor, ranks, alpha=args.alpha, seed=seed, label=mat.label,
                               gaussian=mat.gaussian, check=not args.no_check,
                               randomized=args.randomized)
        data = analysis.to_dict()
        check_finite(data, "svd", "use a smaller --alpha, or --dtype float64")
        print(format_report(analysis))
        write_outputs(args, svd_figure(analysis), data)
    return 0

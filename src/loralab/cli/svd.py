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

from ._args import alpha_float
from ._matrix import add_matrix_arguments, add_output_arguments

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


def run(args: argparse.Namespace) -> int:
    """Check outputs, get the matrix, analyse, print, save."""
    from ..lowrank import analyze_svd, check_ranks
    from ..lowrank.tables import format_svd
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
        print(format_svd(analysis))
        write_outputs(args, svd_figure(analysis), data)
    return 0

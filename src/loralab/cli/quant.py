"""Quantization error as a low-rank problem: QLoRA's start, LoftQ, and the error's spectrum.

For a matrix W (--input, or a generated one), quantize it to --bits (4: NF4 in blocks of 64,
as QLoRA stores a base; 8: one absmax per row) and print ‖W − Q(W)‖_F (where QLoRA starts,
B = 0), then LoftQ's residual ‖W − Q − s·B A‖_F at each of --ranks after 1..--iters rounds,
and whether the error W − Q(W) is low-rank: its singular values beside a random matrix's.

example:
  loralab quant --hidden-size 256 --in-features 512 --ranks 16,64 --iters 5
  loralab quant --input ~/.cache/loralab/base-KEY.safetensors:blocks.2.attn.q_proj.weight
"""

from __future__ import annotations

import argparse

from ._args import positive_int
from ._matrix import add_matrix_arguments, add_output_arguments

HELP = "NF4/int8 error of a matrix, what LoftQ's rank-r adapter wins back, its spectrum"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Matrix, ranks, --bits, --iters and outputs."""
    add_matrix_arguments(parser, hidden_size=256)
    parser.add_argument("--bits", type=int, choices=(4, 8), default=4,
                        help="4 (NF4, blocks of 64, QLoRA's base) or 8 (per-row absmax); "
                             "default 4")
    parser.add_argument("--iters", type=positive_int, default=5, metavar="T",
                        help="LoftQ rounds, 1..100 (default 5): each row is shown after "
                             "every round")
    add_output_arguments(parser, "quant.png")


def format_report(a) -> str:  # noqa: ANN001 (QuantAnalysis, imported lazily)
    """The table: one row per rank, the residual after each round."""
    iters = sorted({r.iters for r in a.rows})
    ranks = sorted({r.rank for r in a.rows})
    lines = [f"loralab quant: {a.bits}-bit {a.label} {a.shape[0]}×{a.shape[1]}, "
             f"‖W‖_F = {a.frobenius_norm:,.4g}",
             f"QLoRA start (B = 0): ‖W − Q(W)‖_F = {a.quant_error:,.4g} "
             f"({a.quant_error / a.frobenius_norm:.4f} of ‖W‖_F)", "",
             "LoftQ residual ‖W − Q − s·B A‖_F / ‖W‖_F after each round:",
             f"{'rank':>6}  " + "  ".join(f"{'t=' + str(t):>8}" for t in iters)]
    for r in ranks:
        lines.append(f"{r:>6}  " + "  ".join(f"{a.residual(r, t) / a.frobenius_norm:>8.4f}"
                                              for t in iters))
    top, rand = a.error_singular_values[0], a.random_singular_values[0]
    lines += ["", f"largest singular value of W − Q(W): {top:,.4g}, against {rand:,.4g} for a "
              "random matrix of its shape and RMS (close: the error is noise-like, and rank r "
              "wins little back; far above: it has structure a low-rank adapter can take)"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Claim the outputs, build or read the matrix, analyse, print, save."""
    from ..lowrank.quant import analyze_quant
    from ..plots.quant import quant_figure
    from ..quant import bnb
    from ._matrix import check_finite, claim_outputs, matrix_from_args, write_outputs

    if args.bits == 4:
        bnb()                                  # say how to install it before any work
    with claim_outputs(args, "quant"):
        matrix = matrix_from_args(args, copies=10)
        a = analyze_quant(matrix.tensor, args.ranks, bits=args.bits, iters=args.iters,
                          label=matrix.label)
        data = a.to_dict()
        check_finite(data, "quant")
        print(format_report(a))
        write_outputs(args, quant_figure(a), data)
    return 0

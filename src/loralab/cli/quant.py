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

from ._args import int_in
from ._matrix import add_matrix_arguments, add_output_arguments

HELP = "NF4/int8 error of a matrix, what LoftQ's rank-r adapter wins back, its spectrum"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Matrix, ranks, --bits, --iters and outputs."""
    add_matrix_arguments(parser, hidden_size=256)
    parser.add_argument("--bits", type=int, choices=(4, 8), default=4,
                        help="4 (NF4, blocks of 64, QLoRA's base) or 8 (per-row absmax); "
                             "default 4")
    parser.add_argument("--iters", type=int_in(1, 100, "--iters"), default=5, metavar="T",
                        help="LoftQ rounds, 1..100 (default 5): each row is shown after "
                             "every round")
    add_output_arguments(parser, "quant.png")


def run(args: argparse.Namespace) -> int:
    """Claim the outputs, build or read the matrix, analyse, print, save."""
    from ..lowrank.quant_error import analyze_quant
    from ..lowrank.tables import format_quant
    from ..plots.quant_error import quant_figure
    from ..quantizer import bnb
    from ._matrix import check_finite, claim_outputs, matrix_from_args, write_outputs

    if args.bits == 4:
        bnb()                                  # say how to install it before any work
    with claim_outputs(args, "quant"):
        matrix = matrix_from_args(args, copies=10, input_dtype="float64")  # checked as float32

        a = analyze_quant(matrix.tensor, args.ranks, bits=args.bits, iters=args.iters,
                          label=matrix.label)
        data = a.to_dict()
        check_finite(data, "quant")
        print(format_quant(a))
        write_outputs(args, quant_figure(a), data)
    return 0

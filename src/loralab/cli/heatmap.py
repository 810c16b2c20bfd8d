"""Heatmaps of W0, W = W0 + ΔW, ΔW and what a rank-r LoRA must leave out, ΔW − [ΔW]_r.

[ΔW]_r is the best rank-r approximation of the update (truncated SVD), so the residual
W − (W0 + [ΔW]_r) = ΔW − [ΔW]_r is the least any rank-r LoRA on W0 leaves out. W0 and W share
one diverging colour scale, ΔW and the residuals another (each symmetric, at the 99.5th
percentile of |entries|). Matrices larger than --max-cells per side are block-averaged.

W0 is a generated Gaussian (or --input); ΔW is generated (--delta-kind lowrank: decaying
low-rank signal + noise, scaled to --delta-scale·‖W0‖_F; seed: the seed's (α/K)·B A) or
loaded with --delta-input.

example:
  loralab heatmap --hidden-size 512 --ranks 2,8,32 --out heatmap.png
  loralab heatmap --input base.npy --delta-input update.npy --ranks 4,16
"""

from __future__ import annotations

import argparse

from ._args import MAX_ALPHA, alpha_float, float_in, positive_int
from ._matrix import add_matrix_arguments, add_output_arguments

HELP = "heatmaps of W0, ΔW, W0 + ΔW and the rank-r residual, on shared colour scales"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """W0 (generated or --input), ΔW (generated or --delta-input), ranks, outputs."""
    add_matrix_arguments(parser, kind=None)
    parser.add_argument("--delta-input", metavar="PATH[:KEY]", default=None,
                        help="load ΔW from a .npy/.safetensors file (same shape as W0)")
    parser.add_argument("--delta-kind", choices=("lowrank", "seed"), default="lowrank",
                        help="generated ΔW: lowrank (signal rank K + noise) or seed "
                             "((α/K)·B A, the seed's random update) (default lowrank)")
    parser.add_argument("--delta-scale", type=float_in(0.0, MAX_ALPHA, lo_open=True,
                                                       what="--delta-scale"),
                        default=0.5, metavar="S",
                        help="lowrank ΔW: ‖ΔW‖_F = S·‖W0‖_F (default 0.5)")
    parser.add_argument("--alpha", type=alpha_float, default=16.0,
                        help="seed ΔW: the LoRA scale α (default 16)")
    parser.add_argument("--max-cells", type=positive_int, default=512, metavar="N",
                        help="block-average matrices larger than N per side (default 512)")
    add_output_arguments(parser, "heatmap.png")


def run(args: argparse.Namespace) -> int:
    """Check outputs, get W0 and ΔW, analyse (one SVD of ΔW), print, save."""
    from ..lowrank import analyze_heatmap, generated_delta
    from ..lowrank.tables import format_heatmap
    from ..plots.lowrank import heatmaps_figure
    from ._matrix import (
        check_finite,
        claim_outputs,
        default_signal_rank,
        matrix_from_args,
        write_outputs,
    )

    with claim_outputs(args, "heatmap"):
        if args.delta_input is not None:
            from ..lowrank.matrixio import check_spec

            check_spec(args.delta_input)           # before W0 is built or read
        w0 = matrix_from_args(args, kind="gaussian", copies=10)
        if args.delta_input is not None:
            from ..lowrank.matrixio import load_matrix

            loaded = load_matrix(args.delta_input, dtype=args.dtype)
            delta, delta_label = loaded.tensor, loaded.label
        else:
            gen = w0.generator if w0.generator is not None else args.seed  # W0's stream on
            delta, delta_label = generated_delta(
                args.delta_kind, w0.tensor, generator=gen, alpha=args.alpha,
                scale=args.delta_scale, noise=args.noise,
                rank=args.signal_rank or default_signal_rank(tuple(w0.tensor.shape)))
        heat = analyze_heatmap(w0.tensor, delta, args.ranks, w0_label=w0.label,
                               delta_label=delta_label, max_cells=args.max_cells)
        data = heat.to_dict()
        check_finite(data, "heatmap", "use a smaller --delta-scale or --alpha, or --dtype "
                     "float64")
        print(format_heatmap(heat))
        fig = heatmaps_figure(heat.w0, heat.delta, list(heat.sweep.ranks),
                              factors=heat.factors, max_cells=heat.max_cells)
        write_outputs(args, fig, data)
    return 0

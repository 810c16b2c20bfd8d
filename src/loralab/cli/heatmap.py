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
from typing import TYPE_CHECKING

from ._args import MAX_ALPHA, alpha_float, float_in, positive_int
from ._matrix import add_matrix_arguments, add_output_arguments

if TYPE_CHECKING:
    import torch

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


def _delta(args: argparse.Namespace, w0: torch.Tensor, gen: torch.Generator
           ) -> tuple[torch.Tensor, str]:
    """ΔW and its label."""
    import torch

    from ..errors import LoralabError
    from ..lowrank import low_rank_plus_noise
    from ._matrix import default_signal_rank

    m, n = w0.shape
    if args.delta_input is not None:
        from ..lowrank.matrixio import load_matrix

        loaded = load_matrix(args.delta_input, dtype=args.dtype)
        if tuple(loaded.tensor.shape) != (m, n):
            raise LoralabError(f"ΔW {loaded.label!r} has shape {tuple(loaded.tensor.shape)}; it "
                               f"must match W0's ({m}, {n})")
        return loaded.tensor, loaded.label
    k = args.signal_rank or default_signal_rank((m, n))
    if args.delta_kind == "seed":
        if k > min(m, n):
            raise LoralabError(f"signal rank {k} is not allowed; it must be 1..{min(m, n)}")
        b = torch.randn(m, k, generator=gen)                           # B: (m, K)
        a = torch.randn(k, n, generator=gen)                           # A: (K, n)
        return ((args.alpha / k) * (b @ a)).to(w0.dtype), f"seed's (α/K)·BA, K = {k}"
    if not (args.delta_scale > 0):
        raise LoralabError(f"--delta-scale {args.delta_scale} is not allowed; it must be > 0")
    d = low_rank_plus_noise(m, n, rank=k, noise=args.noise, seed=gen, dtype="float64")
    d = d * (args.delta_scale * float(torch.linalg.vector_norm(w0, dtype=torch.float64))
             / float(torch.linalg.vector_norm(d)))
    return d.to(w0.dtype), f"low rank {k} + noise {args.noise:g}, ×{args.delta_scale:g}‖W0‖_F"


def _ratio(a: float, b: float, fmt: str) -> str:
    """``a / b`` formatted, or ``n/a`` when ``b`` is 0 (an all-zero W0 or ΔW)."""
    return format(a / b, fmt) if b > 0 else "n/a"


def _report(w0, delta_label: str, sweep, block: int, w0_norm: float) -> str:
    """The header lines and the per-rank residual table."""
    shape = sweep.shape
    lines = [f"loralab heatmap: W0 = {w0.label}, ΔW = {delta_label}, shape {shape}",
             f"‖W0‖_F = {w0_norm:,.5g}, ‖ΔW‖_F = {sweep.frobenius_norm:,.5g} "
             f"(ratio {_ratio(sweep.frobenius_norm, w0_norm, '.3f')})"
             + (f"; shown as {block}×{block} block means" if block > 1 else ""), "",
             f"{'rank':>5}  {'‖ΔW − [ΔW]_r‖_F':>17}  {'of ‖ΔW‖_F':>9}  {'of ‖W0‖_F':>9}"]
    for r, err, rel in zip(sweep.ranks, sweep.optimal_error, sweep.relative_error, strict=True):
        lines.append(f"{r:>5}  {err:>17,.5g}  {rel:>9.2%}  {_ratio(err, w0_norm, '.2%'):>9}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Check outputs, get W0 and ΔW, one SVD of ΔW, print the residual norms, save."""
    import torch

    from ..lowrank import as_matrix, check_ranks, svd_factors, sweep_from_singular_values
    from ..plots.lowrank import block_size, heatmaps_figure
    from ._matrix import check_finite, claim_outputs, matrix_from_args, write_outputs

    with claim_outputs(args, "heatmap"):
        if args.delta_input is not None:
            from ..lowrank.matrixio import check_spec

            check_spec(args.delta_input)           # before W0 is built or read
        w0 = matrix_from_args(args, kind="gaussian", copies=10)
        gen = (w0.generator if w0.generator is not None
               else torch.Generator().manual_seed(args.seed))
        delta, delta_label = _delta(args, w0.tensor, gen)
        delta = as_matrix(delta, name=f"ΔW ({delta_label})")      # finite, in range
        shape = tuple(delta.shape)
        ranks = check_ranks(args.ranks, shape)
        factors = svd_factors(delta)
        sweep = sweep_from_singular_values(factors[1], ranks, shape)
        w0_norm = float(torch.linalg.vector_norm(w0.tensor, dtype=torch.float64))
        block = block_size(shape, args.max_cells)
        data = {"shape": list(shape), "w0": w0.label, "delta": delta_label, "w0_norm": w0_norm,
                "delta_norm": sweep.frobenius_norm, "block": block, "ranks": sweep.ranks,
                "residual_error": sweep.optimal_error, "residual_relative": sweep.relative_error}
        check_finite(data, "heatmap", "use a smaller --delta-scale or --alpha, or --dtype "
                     "float64")
        print(_report(w0, delta_label, sweep, block, w0_norm))
        fig = heatmaps_figure(w0.tensor, delta, list(ranks), factors=factors,
                              max_cells=args.max_cells)
        write_outputs(args, fig, data)
    return 0

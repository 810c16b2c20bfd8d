"""Learn ΔW = (α/r)·B A by Adam to approximate a target at each rank, against the optimum.

LoRA's initialisation (B = 0, A Kaiming-uniform as in PEFT), loss ‖W − (α/r)BA‖_F² / ‖W‖_F²,
cosine learning rate from --lr to --lr/100. Plots the error against the step with each rank's
Eckart–Young floor sqrt(Σ_{i>r} σ_i²), prints learned/optimal at the end (≥ 1; ≤ 1.01 on a
well-conditioned target), and the LoRA paper's subspace similarity
φ(A₁, A₂, i, j) = ‖U₁ⁱᵀ U₂ʲ‖_F² / min(i, j) between the fits at two ranks (U: the top right
singular vectors of A), beside the random baseline max(i, j)/d.

The default target is low rank + noise (a decaying spectrum, like a fine-tuning update). Ranks
beyond its signal rank fit noise directions whose singular values nearly tie: those converge
slowly.

example:
  loralab fit --hidden-size 256 --ranks 2,4,8,16,32 --steps 500 --out fit.png --json fit.json
  loralab fit --input update.npy --ranks 8,64 --compare 8,64
"""

from __future__ import annotations

import argparse

from ._args import MAX_STEPS, alpha_float, float_in, int_in, rank_list
from ._matrix import add_matrix_arguments, add_output_arguments

# Targets up to 512 × 512 are fitted on one thread: measured 15 s against 74 s for the default
# run on the shared 2-core machine (each Adam step's matmuls are too small to split).

HELP = "learn B, A by Adam (B = 0 at start) per rank vs the Eckart–Young floor; φ similarity"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Target, ranks, optimiser settings, the φ pair and outputs."""
    add_matrix_arguments(parser, hidden_size=256, kind="lowrank")
    parser.add_argument("--steps", type=int_in(1, MAX_STEPS), default=500,
                        help="Adam steps per rank (default 500)")
    parser.add_argument("--lr", type=float_in(0.0, 10.0, lo_open=True, what="--lr"),
                        default=2e-2,
                        help="peak learning rate; cosine decay to lr/100 (default 0.02)")
    parser.add_argument("--alpha", type=alpha_float, default=16.0,
                        help="LoRA scale α: ΔW = (α/r)·B A (default 16)")
    parser.add_argument("--compare", type=rank_list, default=None, metavar="R1,R2",
                        help="the two fitted ranks for φ (default: the two largest)")
    add_output_arguments(parser, "fit.png")


def run(args: argparse.Namespace) -> int:
    """Check outputs, get the target, fit every rank, print, save."""
    from ..lowrank import check_ranks, fit_lowrank
    from ..lowrank.tables import format_fit
    from ..plots.lowrank import fit_figure
    from ..threads import small_matrix_threads, torch_threads
    from ._matrix import check_finite, claim_outputs, matrix_from_args, write_outputs

    with claim_outputs(args, "fit"):
        mat = matrix_from_args(args)
        ranks = check_ranks(args.ranks, tuple(mat.tensor.shape))
        # per-step matmuls this small lose more to thread hand-offs than they gain
        with torch_threads(small_matrix_threads(mat.tensor.numel())):
            result = fit_lowrank(mat.tensor, ranks, steps=args.steps, lr=args.lr,
                                 alpha=args.alpha, seed=args.seed, compare=args.compare)
        data = result.to_dict()
        check_finite(data, "fit", "lower --lr or --alpha")
        print(format_fit(result, mat.label))
        write_outputs(args, fit_figure(result), data)
    return 0

"""The seed's demo: per-rank table, lora_rank_error.png, and the LoRA pseudo code.

For a random W0 ~ N(0,1) (d × d) and each rank r: random B (d × r), A (r × d),
ΔW = (α/r)·BA. Prints the seed's "error" ‖W0 − (W0+ΔW)‖_F = ‖ΔW‖_F beside its theory
α·d/√r and the best rank-r error of W0 (Eckart–Young), saves the figure, prints the code.
"""

from __future__ import annotations

import argparse

from ._args import add_json_option, alpha_float, positive_int, rank_list, seed_int

HELP = "the seed's rank demo: table, lora_rank_error.png, pseudo code"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags mirror the seed's LoraConfig plus seed, output and dtype."""
    parser.add_argument("--hidden-size", type=positive_int, default=512, metavar="D",
                        help="d: the simulated weight is d × d (default 512)")
    parser.add_argument("--ranks", type=rank_list, default=(2, 4, 8, 16, 32), metavar="R,R,..",
                        help="comma-separated ranks, each 1..d (default 2,4,8,16,32)")
    parser.add_argument("--alpha", type=alpha_float, default=16.0,
                        help="LoRA scale α; the update is scaled by α/r (default 16)")
    parser.add_argument("--seed", type=seed_int, default=42, help="random seed (default 42)")
    parser.add_argument("--out", default="lora_rank_error.png", metavar="PATH",
                        help="where to save the figure: .png, .pdf or .svg, by the suffix "
                             "(default ./lora_rank_error.png)")
    add_json_option(parser)
    parser.add_argument("--no-plot", action="store_true", help="do not draw the figure")
    parser.add_argument("--no-pseudo", action="store_true", help="do not print the pseudo code")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="arithmetic precision (default float32)")


def run(args: argparse.Namespace) -> int:
    """Validate everything first, then compute, print, and write files atomically."""
    from ..demo import LoraConfig, pseudo_code, simulate_lora
    from ..fileio import atomic_write_json, output_files
    from ..lowrank.budget import check_matrix_memory
    from ..plots import check_figure_path

    config = LoraConfig(hidden_size=args.hidden_size, rank_candidates=args.ranks,
                        alpha=args.alpha)
    figure = None if args.no_plot else args.out
    if figure is not None:
        check_figure_path(figure)
    d = args.hidden_size
    check_matrix_memory((d, d), copies=6, what=f"a {d} × {d} {args.dtype} W0 and its SVD")
    with output_files({"--out": figure, "--json": args.json}, "demo", force=args.force):
        result = simulate_lora(config, seed=args.seed, dtype=args.dtype, plot_path=figure)
        if args.json:
            atomic_write_json(args.json, result.to_dict())
            print(f"saved {args.json}")
    if not args.no_pseudo:
        print("\nLoRA injected into nn.Linear (pseudo code, runnable):\n")
        pseudo_code()
    return 0

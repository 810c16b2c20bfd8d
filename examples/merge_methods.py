"""Merge two trained adapters every way ``add_weighted_adapter`` knows, and see what each does.

Two LoRA adapters (r = 8 on every attention and MLP projection) are trained for a few steps
on a small random-init TinyLM, one on English, one on Pig Latin
(:func:`loralab.experiment.merge_study.merge_study`). Then each combination of
``0.6·english + 0.4·piglatin`` is built and compared with the exact weighted sum of their
updates, ``Σ w_i ΔW_i``: the table prints the relative distance and the share of zero
entries, and ``merge_methods.png`` shows it with one layer's update under five of them.

    python examples/merge_methods.py [--steps 30] [--density 0.5] [--out merge_methods.png]
"""

from __future__ import annotations

import argparse

from loralab.experiment.merge_study import merge_study
from loralab.plots import save_png
from loralab.plots.merge_methods import merge_methods_figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--density", type=float, default=0.5)
    parser.add_argument("--out", default="merge_methods.png")
    args = parser.parse_args()
    errors, losses = merge_study(args.steps, args.density)
    for name, loss in losses.items():
        print(f"trained {name:<9} {args.steps} steps: loss {loss:.3f}")
    print(f"\n{'combination':<20} {'rank':>4} {'distance':>10} {'zeros':>6}")
    for row in errors.rows:
        print(f"{row.combination:<20} {row.rank:>4} {row.relative:>10.3g} {row.zeros:>6.1%}")
    print(f"\nwrote {save_png(merge_methods_figure(errors), args.out)}")


if __name__ == "__main__":
    main()

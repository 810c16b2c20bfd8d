"""Shrink a saved LoRA adapter to a lower rank, and see what each module loses.

Reads a PEFT adapter folder (adapter_config.json + adapter_model.safetensors, from loralab
or PEFT), cuts every module's update ΔW = s·B A to its best rank r′ (its top singular
directions; Eckart–Young: no rank-r′ matrix is closer) and writes a new PEFT adapter folder
--out (PEFT and loralab load it). --rank R gives every module rank min(R, r); --energy E
gives each module the smallest rank keeping E of ‖ΔW‖_F². Per module it prints the error
Eckart–Young predicts, √(Σ dropped σ²), beside the one measured on the written factors,
‖ΔW − ΔW′‖_F.

example:
  loralab shrink runs/adapter --rank 4 --out runs/adapter-r4
  loralab shrink runs/adapter --energy 0.9 --out runs/adapter-e90
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ._args import float_in, positive_int

if TYPE_CHECKING:
    from ..lora.shrink import ShrinkResult

HELP = "cut a saved LoRA adapter to rank r′ (or an energy share); predicted vs measured error"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """ADAPTER, one of --rank / --energy, --out."""
    parser.add_argument("adapter", metavar="ADAPTER",
                        help="a PEFT adapter folder (adapter_config.json + "
                             "adapter_model.safetensors)")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--rank", type=positive_int, metavar="R",
                     help="the new rank of every module (1..the adapter's rank; a module "
                          "already at or below R keeps its rank)")
    how.add_argument("--energy", type=float_in(0.0, 1.0, lo_open=True, what="the share"),
                     metavar="E", help="keep, per module, the smallest rank holding this share "
                                       "of ‖ΔW‖_F² (0 < E <= 1)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="the new adapter folder (must not exist)")


def format_shrink(result: ShrinkResult) -> str:
    """The per-module table and a total line."""
    rows = [f"{'module':<44} {'r':>4} {'r′':>4} {'‖ΔW‖_F':>10} {'Eckart–Young':>13} "
            f"{'measured':>10} {'kept ‖ΔW‖²':>11}"]
    before = after = 0
    for m in result.modules:
        before += m.rank * sum(m.shape)
        after += m.new_rank * sum(m.shape)
        rows.append(f"{m.path[-44:]:<44} {m.rank:>4} {m.new_rank:>4} {m.norm:>10.4g} "
                    f"{m.predicted:>13.4g} {m.measured:>10.4g} {m.kept:>10.1%}")
    rows.append(f"{len(result.modules)} modules; LoRA parameters {before:,} -> {after:,} "
                f"({after / before:.1%}); wrote {result.out}")
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    """Check, shrink, write, print."""
    from ..lora.shrink import shrink_adapter

    result = shrink_adapter(args.adapter, args.out, rank=args.rank, energy=args.energy)
    print(format_shrink(result))
    return 0

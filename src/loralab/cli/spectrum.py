"""Singular values and cumulative energy: a Gaussian W0, a low-rank-plus-noise update, yours.

One figure compares a Gaussian W0 ~ N(0, 1) (flat spectrum; the Marchenko–Pastur law, a
quarter circle when square, is overlaid as theory), a matrix with a decaying spectrum
(low rank + noise, like a fine-tuning update) and, with --input, your matrix (the generated
ones then take its shape). Prints the ranks that hold 50/90/99 % of ‖W‖_F² and the energy
kept at each of --ranks.

example:
  loralab spectrum --hidden-size 512 --out spectrum.png --json spectrum.json
  loralab spectrum --input delta.npy --ranks 4,8,16
"""

from __future__ import annotations

import argparse

from ._matrix import add_matrix_arguments, add_output_arguments

HELP = "singular values, cumulative energy, ranks for 50/90/99 percent; Marchenko–Pastur"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Matrix (no --kind: both kinds are always shown), ranks and outputs."""
    add_matrix_arguments(parser, kind=None)
    add_output_arguments(parser, "spectrum.png")


def run(args: argparse.Namespace) -> int:
    """Check outputs, build the matrices, one svdvals each, print, save."""
    from ..lowrank import compare_spectra
    from ..lowrank.tables import format_spectrum
    from ..plots.lowrank import spectrum_figure
    from ._matrix import (
        check_finite,
        check_memory,
        claim_outputs,
        default_signal_rank,
        generated_shape,
        matrix_from_args,
        write_outputs,
    )

    with claim_outputs(args, "spectrum"):
        user = matrix_from_args(args, copies=10) if args.input is not None else None
        shape = tuple(user.tensor.shape) if user is not None else generated_shape(args)
        if user is None:
            check_memory(args, shape, copies=8)
        comparison = compare_spectra(
            shape, args.ranks, seed=args.seed,
            signal_rank=args.signal_rank or default_signal_rank(shape), noise=args.noise,
            dtype=args.dtype, user=None if user is None else user.tensor,
            user_label="" if user is None else user.label)
        data = comparison.to_dict()
        check_finite(data, "spectrum")
        print(format_spectrum(comparison))
        write_outputs(args, spectrum_figure(list(comparison.spectra)), data)
    return 0

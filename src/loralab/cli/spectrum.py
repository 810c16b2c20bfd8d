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
    import torch

    from ..lowrank import check_ranks, make_matrix, spectrum
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
        ranks = check_ranks(args.ranks, shape)
        gen = torch.Generator().manual_seed(args.seed)
        k = args.signal_rank or default_signal_rank(shape)
        gaussian = make_matrix("gaussian", *shape, seed=gen, dtype=args.dtype)
        update = make_matrix("lowrank", *shape, seed=gen, dtype=args.dtype, rank=k,
                             noise=args.noise)
        spectra = [spectrum(gaussian, label="Gaussian W0 ~ N(0,1)", gaussian=True),
                   spectrum(update, label=f"low rank {k} + noise {args.noise:g}")]
        if user is not None:
            spectra.append(spectrum(user.tensor, label=user.label))
        data = {"ranks": list(ranks),
                "spectra": [dict(sp.to_dict(),
                                 energy_at_ranks=[sp.cumulative_energy[r - 1] for r in ranks])
                            for sp in spectra]}
        check_finite(data, "spectrum")
        print(format_spectrum(spectra, ranks))
        write_outputs(args, spectrum_figure(spectra), data)
    return 0

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


def format_report(spectra: list, ranks: tuple[int, ...]) -> str:
    """One row per matrix: shape, ‖W‖_F, the energy ranks and the energy kept at each rank."""
    keys = list(spectra[0].energy_ranks)
    lines = ["loralab spectrum: energy ‖W_r‖_F² / ‖W‖_F² kept by the top r singular values",
             "",
             f"{'matrix':<34} {'shape':>12} {'‖W‖_F':>12}  "
             + "  ".join(f"{'r(' + k + ')':>8}" for k in keys) + "  "
             + "  ".join(f"{'r=' + str(r):>7}" for r in ranks)]
    for sp in spectra:
        kept = [sp.cumulative_energy[r - 1] if r <= len(sp.cumulative_energy) else 1.0
                for r in ranks]
        shape = f"{sp.shape[0]}×{sp.shape[1]}"
        lines.append(f"{sp.label[:34]:<34} {shape:>12} {sp.frobenius_norm:>12,.5g}  "
                     + "  ".join(f"{sp.energy_ranks[k]:>8}" for k in keys) + "  "
                     + "  ".join(f"{e:>7.1%}" for e in kept))
    gauss = [sp for sp in spectra if sp.gaussian]
    if gauss:
        from ..lowrank.theory import mp_edges

        sp = gauss[0]
        lo, hi = mp_edges(*sp.shape, std=sp.frobenius_norm / (sp.shape[0] * sp.shape[1]) ** 0.5)
        s = sp.singular_values
        lines += ["", f"Marchenko–Pastur edges for the Gaussian {sp.shape[0]}×{sp.shape[1]}: "
                  f"σ in [{lo:,.3f}, {hi:,.3f}] (theory) vs [{s[-1]:,.3f}, {s[0]:,.3f}] "
                  "(measured)"]
    lines += ["", "A flat spectrum needs most ranks for most of the energy; a decaying one "
              "(what LoRA bets a fine-tuning update has) needs few."]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Check outputs, build the matrices, one svdvals each, print, save."""
    import torch

    from ..lowrank import check_ranks, make_matrix, spectrum
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
        print(format_report(spectra, ranks))
        write_outputs(args, spectrum_figure(spectra), data)
    return 0

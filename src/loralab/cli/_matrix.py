"""Options shared by the low-rank subcommands (svd, spectrum, heatmap, fit): which matrix,
which ranks, where the PNG and JSON go. No torch import at module level."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._args import add_json_option, finite_float, positive_int, rank_list

if TYPE_CHECKING:
    import torch

__all__ = ["Matrix", "add_matrix_arguments", "add_output_arguments", "check_outputs",
           "default_signal_rank", "matrix_from_args", "write_outputs"]


def add_matrix_arguments(parser: argparse.ArgumentParser, *, hidden_size: int = 512,
                         kind: str | None = "gaussian", kind_help: str | None = None) -> None:
    """``--input`` or a generated matrix (``--hidden-size``, ``--in-features``, ``--kind``,
    ``--signal-rank``, ``--noise``, ``--seed``), ``--dtype`` and ``--ranks``."""
    parser.add_argument("--input", metavar="PATH[:KEY]", default=None,
                        help="analyse this matrix: a .npy file, or a .safetensors file with "
                             "KEY naming the tensor (optional when it holds one); default: a "
                             "generated matrix")
    parser.add_argument("--hidden-size", type=positive_int, default=None, metavar="D",
                        help=f"generated matrix: d_out rows (default {hidden_size})")
    parser.add_argument("--in-features", type=positive_int, default=None, metavar="N",
                        help="generated matrix: d_in columns (default: D, square)")
    if kind is not None:
        parser.add_argument("--kind", choices=("gaussian", "lowrank"), default=kind,
                            help=kind_help or "generated matrix: gaussian W0 ~ N(0,1), or "
                            f"lowrank = decaying low-rank signal + noise (default {kind})")
    parser.add_argument("--signal-rank", type=positive_int, default=None, metavar="K",
                        help="lowrank kind: rank of the signal, σ_K = σ_1/10 (default "
                             "min(32, min(m, n)/4))")
    parser.add_argument("--noise", type=finite_float, default=0.1, metavar="X",
                        help="lowrank kind: noise RMS relative to the signal's (default 0.1)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="arithmetic precision (default float32)")
    parser.add_argument("--ranks", type=rank_list, default=(2, 4, 8, 16, 32), metavar="R,R,..",
                        help="comma-separated ranks, each 1..min(m, n), used sorted "
                             "(default 2,4,8,16,32)")
    parser.set_defaults(_default_hidden=hidden_size)


def add_output_arguments(parser: argparse.ArgumentParser, default_png: str) -> None:
    """``--out PATH`` (the PNG) and ``--json PATH``."""
    parser.add_argument("--out", default=default_png, metavar="PATH",
                        help=f"where to save the figure (default ./{default_png})")
    add_json_option(parser)


def check_outputs(args: argparse.Namespace) -> None:
    """Fail before any computation when an output cannot be written."""
    from ..errors import LoralabError
    from ..fileio import check_output_file

    check_output_file(args.out)
    if args.json:
        check_output_file(args.json)
        if args.json == args.out:
            raise LoralabError(f"--json {args.json!r} is the same file as --out; give two names")


def default_signal_rank(shape: tuple[int, int]) -> int:
    """``min(32, max(1, min(m, n) // 4))``."""
    return min(32, max(1, min(shape) // 4))


@dataclass
class Matrix:
    """The matrix a command works on.

    Attributes:
        tensor: ``(m, n)``.
        label: a short name for titles and tables.
        gaussian: generated with i.i.d. N(0, 1) entries (the theory applies).
        generator: the generator it was drawn from (``None`` for ``--input``); drawing on
            from it continues the seed's random stream.
    """

    tensor: torch.Tensor
    label: str
    gaussian: bool
    generator: Any = None


def generated_shape(args: argparse.Namespace) -> tuple[int, int]:
    """``(--hidden-size, --in-features)`` with their defaults."""
    m = args.hidden_size or args._default_hidden
    return m, args.in_features or m


def matrix_from_args(args: argparse.Namespace, *, kind: str | None = None) -> Matrix:
    """Load ``--input`` or generate ``kind`` (default ``--kind``) from ``--seed``."""
    import torch

    from ..errors import LoralabError
    from ..lowrank import make_matrix

    if args.input is not None:
        if args.hidden_size is not None or args.in_features is not None:
            raise LoralabError("--input and --hidden-size/--in-features cannot be combined: the "
                               "file gives the matrix's shape")
        from ..lowrank.matrixio import load_matrix

        loaded = load_matrix(args.input, dtype=args.dtype)
        return Matrix(loaded.tensor, loaded.label, gaussian=False)
    kind = kind or getattr(args, "kind", "gaussian")
    shape = generated_shape(args)
    gen = torch.Generator().manual_seed(args.seed)
    rank = args.signal_rank or default_signal_rank(shape)
    w = make_matrix(kind, *shape, seed=gen, dtype=args.dtype, rank=rank, noise=args.noise)
    label = ("Gaussian W0 ~ N(0,1)" if kind == "gaussian"
             else f"low rank {rank} + noise {args.noise:g}")
    return Matrix(w, label, gaussian=kind == "gaussian", generator=gen)


def write_outputs(args: argparse.Namespace, fig: Any, data: Any) -> None:
    """Save the PNG, and the JSON when asked (both atomically), and say where."""
    from ..fileio import atomic_write_json
    from ..plots import save_png

    print(f"\nsaved {save_png(fig, args.out)}")
    if args.json:
        print(f"saved {atomic_write_json(args.json, data)}")

"""Options shared by the low-rank subcommands (svd, spectrum, heatmap, fit): which matrix,
which ranks, where the PNG and JSON go. No torch import at module level."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._args import add_json_option, float_in, positive_int, rank_list, seed_int

if TYPE_CHECKING:
    import torch

__all__ = ["Matrix", "add_matrix_arguments", "add_output_arguments", "check_finite",
           "claim_outputs", "default_signal_rank", "matrix_from_args", "write_outputs"]


def add_matrix_arguments(parser: argparse.ArgumentParser, *, hidden_size: int = 512,
                         kind: str | None = "gaussian", kind_help: str | None = None) -> None:
    """``--input`` or a generated matrix (``--hidden-size``, ``--in-features``, ``--kind``,
    ``--signal-rank``, ``--noise``, ``--seed``), ``--dtype`` and ``--ranks``."""
    parser.add_argument("--input", metavar="PATH[:KEY]", default=None,
                        help="analyse this matrix: a .npy file, a .safetensors file with "
                             "KEY naming the tensor (optional when it holds one), a .gguf file "
                             "with KEY a GGUF tensor (de-quantized), or the built-in real model "
                             "as smollm2:KEY (e.g. smollm2:blk.0.attn_q.weight); default: a "
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
    parser.add_argument("--noise", type=float_in(0.0, 1e3, what="--noise"), default=0.1,
                        metavar="X", help="lowrank kind: noise RMS relative to the signal's "
                        "(default 0.1)")
    parser.add_argument("--seed", type=seed_int, default=42, help="random seed (default 42)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="arithmetic precision (default float32)")
    parser.add_argument("--ranks", type=rank_list, default=(2, 4, 8, 16, 32), metavar="R,R,..",
                        help="comma-separated ranks, each 1..min(m, n), used sorted "
                             "(default 2,4,8,16,32)")
    parser.set_defaults(_default_hidden=hidden_size)


def add_output_arguments(parser: argparse.ArgumentParser, default_png: str) -> None:
    """``--out PATH`` (the figure) and ``--json PATH``."""
    parser.add_argument("--out", default=default_png, metavar="PATH",
                        help=f"where to save the figure: .png, .pdf or .svg, by the suffix "
                             f"(default ./{default_png})")
    add_json_option(parser)


@contextlib.contextmanager
def claim_outputs(args: argparse.Namespace, command: str) -> Iterator[None]:
    """Before any computation: the figure's suffix names a format we write, ``--out`` and
    ``--json`` are two writable files (never one, a FIFO or a folder), and no other run is
    writing them (a lock beside each while the command runs). See :mod:`loralab.fileio`."""
    from ..fileio import output_files
    from ..plots import check_figure_path

    check_figure_path(args.out)
    with output_files({"--out": args.out, "--json": args.json}, command, force=args.force):
        yield


def check_finite(data: Any, command: str, advice: str = "use smaller values, or --dtype "
                 "float64") -> None:
    """Refuse (``error: overflow: ...``) a result holding inf/NaN, before it is printed."""
    from ..fileio import require_finite

    require_finite(data, f"loralab {command}:", advice)


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


def check_memory(args: argparse.Namespace, shape: tuple[int, int], copies: int,
                 source: str = "") -> None:
    """Refuse, before allocating, a matrix whose analysis would not fit in memory."""
    from ..lowrank.budget import check_matrix_memory

    m, n = shape
    check_matrix_memory(shape, copies=copies, square=not source,
                        what=f"{source or 'a'} {m} × {n} {args.dtype} matrix and its analysis",
                        flag="--in-features" if args.in_features else "--hidden-size")


def matrix_from_args(args: argparse.Namespace, *, kind: str | None = None,
                     copies: int = 8, input_dtype: str | None = None) -> Matrix:
    """Load ``--input`` (in ``input_dtype`` when given, else ``--dtype``: a command that
    computes in its own dtype checks the range there) or generate ``kind`` (default
    ``--kind``) from ``--seed``, after checking that ``copies`` float64 arrays of its shape
    fit in memory."""
    import torch

    from ..errors import LoralabError
    from ..lowrank import make_matrix

    if args.input is not None:
        if args.hidden_size is not None or args.in_features is not None:
            raise LoralabError("--input and --hidden-size/--in-features cannot be combined: the "
                               "file gives the matrix's shape")
        from ..lm.gguf import resolve_matrix_spec
        from ..lowrank.matrixio import load_matrix

        loaded = load_matrix(resolve_matrix_spec(args.input), dtype=input_dtype or args.dtype)
        check_memory(args, tuple(loaded.tensor.shape), copies, source="the input's")
        return Matrix(loaded.tensor, loaded.label, gaussian=False)
    kind = kind or getattr(args, "kind", "gaussian")
    shape = generated_shape(args)
    check_memory(args, shape, copies)
    gen = torch.Generator().manual_seed(args.seed)
    rank = args.signal_rank or default_signal_rank(shape)
    w = make_matrix(kind, *shape, seed=gen, dtype=args.dtype, rank=rank, noise=args.noise)
    label = ("Gaussian W0 ~ N(0,1)" if kind == "gaussian"
             else f"low rank {rank} + noise {args.noise:g}")
    return Matrix(w, label, gaussian=kind == "gaussian", generator=gen)


def write_outputs(args: argparse.Namespace, fig: Any, data: Any) -> None:
    """Save the JSON when asked, then the figure (PNG, PDF or SVG by suffix), both
    atomically, and say where. A figure that cannot be drawn is one line saying why, after
    the numbers are saved (printed above, and in the JSON)."""
    from ..errors import LoralabError
    from ..fileio import atomic_write_json
    from ..plots import save_figure

    saved = str(atomic_write_json(args.json, data)) if args.json else None
    try:
        figure = save_figure(fig, args.out)
    except (ValueError, OverflowError) as exc:     # matplotlib: e.g. nothing to log-scale
        where = f"saved in {saved} and printed above" if saved else "printed above"
        raise LoralabError(f"the figure {str(args.out)!r} could not be drawn ({exc}); the "
                           f"numbers are {where}") from None
    print(f"\nsaved {figure}")
    if saved:
        print(f"saved {saved}")

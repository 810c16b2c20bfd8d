"""Argument types and options shared by several subcommands (no torch import here).

Every numeric flag has a range, checked when the command line is parsed (before any work,
before any file is created); argparse's error names the flag: ``error: argument --seed:
18446744073709551616 is not allowed; a seed must be 0..4294967295``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = [
    "MAX_ALPHA",
    "MAX_DIM",
    "MAX_SEED",
    "MAX_STEPS",
    "MAX_THREADS",
    "add_force_option",
    "add_json_option",
    "alpha_float",
    "finite_float",
    "float_in",
    "int_in",
    "positive_int",
    "rank_list",
    "seed_int",
    "thread_count",
]

MAX_DIM = 65_536          # a matrix side, a rank, a signal rank (memory is checked as well)
MAX_SEED = 2**32 - 1      # what every generator takes (torch, numpy)
MAX_STEPS = 1_000_000     # optimizer steps of `loralab fit`
MAX_ALPHA = 1e6           # the LoRA scale α (real ones are 1..256)
MAX_THREADS = 1024


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        hint = "; write it out in digits" if "e" in text.lower() else ""
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer{hint}") from None


def int_in(lo: int, hi: int, what: str = "it") -> Callable[[str], int]:
    """argparse type: an integer in ``lo..hi``."""
    def parse(text: str) -> int:
        value = _int(text)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is not allowed; {what} must be "
                                             f"{lo}..{hi}")
        return value

    parse.__name__ = "int"
    return parse


positive_int = int_in(1, MAX_DIM)
"""argparse type: an integer in ``1..MAX_DIM`` (a size)."""

seed_int = int_in(0, MAX_SEED, "a seed")
"""argparse type: a random seed, ``0..2**32 - 1``."""


def _count(flag: str, zero: str) -> Callable[[str], int]:
    """argparse type: ``flag``'s count, 0 (``zero``) or ``1..MAX_THREADS``."""
    def parse(text: str) -> int:
        value = _int(text)
        if not 0 <= value <= MAX_THREADS:
            raise argparse.ArgumentTypeError(f"{flag} {value} is not allowed; give 0 ({zero}) "
                                             f"or 1..{MAX_THREADS}")
        return value
    return parse


thread_count = _count("--threads", "the command's default rule")
"""argparse type: ``--threads``, 0 (the command's default rule) or ``1..MAX_THREADS``."""

job_count = _count("--jobs", "one process per free core")
"""argparse type: ``--jobs``, 0 (one per core for a tiny model) or ``1..MAX_THREADS``."""


def float_in(lo: float, hi: float, *, lo_open: bool = False,
             what: str = "it") -> Callable[[str], float]:
    """argparse type: a finite float in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``)."""
    def parse(text: str) -> float:
        value = finite_float(text)
        if value > hi or value < lo or (lo_open and value == lo):
            low = f"> {lo:g}" if lo_open else f">= {lo:g}"
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed; {what} must be {low} "
                                             f"and <= {hi:g}")
        return value

    parse.__name__ = "float"
    return parse


def finite_float(text: str) -> float:
    """argparse type: a finite float (no nan/inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; it must be a finite number")
    return value


alpha_float = float_in(0.0, MAX_ALPHA, lo_open=True, what="the LoRA scale α")


def rank_list(text: str) -> tuple[int, ...]:
    """argparse type: comma-separated ranks such as ``2,4,8`` (each 1..MAX_DIM, at least one)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"{text!r} holds no rank; give e.g. 2,4,8")
    ranks = []
    for p in parts:
        try:
            r = int(p)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"rank {p!r} is not an integer; give e.g. 2,4,8") from None
        if r < 1:
            raise argparse.ArgumentTypeError(f"rank {r} is not allowed; ranks must be >= 1")
        if r > MAX_DIM:
            raise argparse.ArgumentTypeError(f"rank {r} is not allowed; ranks must be <= "
                                             f"{MAX_DIM}")
        ranks.append(r)
    return tuple(ranks)


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """``--json PATH``: also write the numbers as JSON."""
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="also write the numbers to this JSON file")
    add_force_option(parser)


def add_force_option(parser: argparse.ArgumentParser, what: str = "--out or --json") -> None:
    """``--force``: replace an existing output file that loralab did not write."""
    parser.add_argument("--force", action="store_true",
                        help=f"replace an existing {what} file that loralab did not write "
                             "(without it such a file is never replaced: the command refuses "
                             "before any work, naming the file)")

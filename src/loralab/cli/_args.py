"""Argument types and options shared by several subcommands (no torch import here)."""

from __future__ import annotations

import argparse
import math

__all__ = [
    "add_json_option",
    "finite_float",
    "positive_int",
    "rank_list",
]


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not allowed; it must be >= 1")
    return value


def finite_float(text: str) -> float:
    """argparse type: a finite float (no nan/inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; it must be a finite number")
    return value


def rank_list(text: str) -> tuple[int, ...]:
    """argparse type: comma-separated ranks such as ``2,4,8`` (each >= 1, at least one)."""
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
        ranks.append(r)
    return tuple(ranks)


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """``--json PATH``: also write the numbers as JSON."""
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="also write the numbers to this JSON file")

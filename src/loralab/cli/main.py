"""``loralab``: the command-line entry point.

Each subcommand lives in ``loralab/cli/<name>.py`` and exposes ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. Those modules import torch only inside
``run``, so ``loralab --help`` stays fast and torch-free.

Bad input never produces a traceback: argparse errors, :class:`~loralab.errors.LoralabError`,
``ValueError`` and ``OSError`` become one ``error: ...`` line on stderr and exit code 2.
Set ``LORALAB_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

__all__ = ["COMMANDS", "build_parser", "main"]

# Order is the order shown by `loralab --help`.
COMMANDS: tuple[str, ...] = (
    "demo", "pseudo", "svd", "spectrum", "heatmap", "fit", "finetune", "report",
)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``error: ...`` and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The full parser, every subcommand included (imports no torch)."""
    from .. import __version__

    parser = _Parser(
        prog="loralab",
        description="See, check and train LoRA (Low-Rank Adaptation).",
    )
    parser.add_argument("--version", action="version", version=f"loralab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)
    for name in COMMANDS:
        mod = importlib.import_module(f"loralab.cli.{name}")
        sp = sub.add_parser(name, help=mod.HELP, description=mod.__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(sp)
        sp.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``loralab`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as exc:  # LoralabError is a ValueError
        if os.environ.get("LORALAB_DEBUG"):
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

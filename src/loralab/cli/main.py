"""``loralab``: the command-line entry point.

Each subcommand lives in ``loralab/cli/<name>.py`` and exposes ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. Those modules import torch only inside
``run``, so ``loralab --help`` stays fast and torch-free.

Bad input never produces a traceback: argparse errors, :class:`~loralab.errors.LoralabError`,
``ValueError`` and ``OSError`` become one ``error: ...`` line on stderr and exit code 2; so
does running out of memory. Anything else is a bug: it prints one ``error: internal error``
line naming the file the full traceback was saved to (in the temp folder) and exits with
code 1. Set ``LORALAB_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

__all__ = ["COMMANDS", "build_parser", "main"]

# Order is the order shown by `loralab --help`.
COMMANDS: tuple[str, ...] = (
    "demo", "pseudo", "svd", "spectrum", "heatmap", "fit", "quant", "shrink", "finetune",
    "check", "advise", "report",
)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``error: ...`` and exit code 2."""

    def error(self, message: str) -> NoReturn:
        message = re.sub(r"^argument (--[\w-]+): \1 ", r"\1 ", message)  # said once
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _out_of_memory(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, MemoryError) or "can't allocate memory" in text \
        or "out of memory" in text.lower()


def _save_traceback(exc: BaseException) -> str:
    """Write the full traceback to a file in the temp folder; return its path (or why not)."""
    import tempfile
    import time
    import traceback

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        fd, path = tempfile.mkstemp(prefix=f"loralab-traceback-{time.strftime('%Y%m%d-%H%M%S')}-",
                                    suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(f"loralab {' '.join(sys.argv[1:])}\n\n{text}")
    except OSError as err:
        return f"nowhere (it could not be saved: {err.strerror})"
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``loralab`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    args = build_parser().parse_args(argv)
    debug = bool(os.environ.get("LORALAB_DEBUG"))
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as exc:  # LoralabError is a ValueError
        if debug:
            raise
        print(f"error: {_first_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # the last resort: a bug, said in one line
        if debug:
            raise
        if _out_of_memory(exc):
            print(f"error: out of memory ({_first_line(exc)[:120]}); give smaller sizes",
                  file=sys.stderr)
            return 2
        print(f"error: internal error ({type(exc).__name__}: {_first_line(exc)[:200]}); the "
              f"full traceback is in {_save_traceback(exc)} (LORALAB_DEBUG=1 shows it here)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""``loralab``: the command-line entry point, one module per subcommand.

:mod:`.main` holds the parser and :func:`main`; each ``loralab.cli.<name>`` module exposes
``HELP``, ``add_arguments(parser)`` and ``run(args) -> int`` and imports torch only inside
``run``, so ``loralab --help`` stays fast and torch-free.
"""

from __future__ import annotations

from .main import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "build_parser", "main"]

"""loralab spectrum (not built yet)."""

from __future__ import annotations

import argparse

HELP = "(coming soon)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options yet."""


def run(args: argparse.Namespace) -> int:
    """Not built yet."""
    from ..errors import LoralabError

    raise LoralabError("'loralab spectrum' is not built yet")

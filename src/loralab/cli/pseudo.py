"""Print the seed's pseudo code: LoRA injected into nn.Linear (it also runs as is)."""

from __future__ import annotations

import argparse

HELP = "print the LoRA-injection pseudo code"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options."""


def run(args: argparse.Namespace) -> int:
    """Print :data:`loralab.demo.PSEUDO_CODE`."""
    from ..demo import pseudo_code

    pseudo_code()
    return 0

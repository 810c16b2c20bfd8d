"""Shared fixtures: hermetic runs (no network, fixed threads, headless plotting)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models and matrices: one thread is as fast, and immune to a busy machine."""
    from loralab.threads import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture
def run_cli():
    """``loralab.cli.main`` as a function of argv that returns the exit code (argparse's
    ``SystemExit`` included), so a test checks ``run_cli([...]) == 2``."""
    from loralab.cli import main

    def run(argv: list[str]) -> int:
        try:
            return main(argv)
        except SystemExit as exc:  # argparse errors, --help
            return int(exc.code or 0)

    return run

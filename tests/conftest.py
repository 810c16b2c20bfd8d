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

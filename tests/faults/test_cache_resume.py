"""Class 4: a poisoned cache or resume state is refused before any training, and the advice
of the message works: following it, the next run succeeds on clean state.

The cached base carries the SHA-256 of its tensors, its key and seed (checked on every read)
and is checked for NaN/Inf; the resume state is stamped with the hash of the base it trained
on, so a rebuilt base never resumes runs trained on the old one.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch
from conftest import TINY_ARGS, one_error_line

from loralab.experiment import ExperimentConfig, RunOptions, run_experiment
from loralab.lm.checkpoint import load_weights, save_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def finetune(run_cli, cache: Path, out: Path, *extra: str) -> int:
    return run_cli(["finetune", *TINY_ARGS, "--cache", str(cache), "--out", str(out), *extra])


def rewrite(path: Path, change) -> None:
    """Rewrite a loralab weights file with ``change(tensors)`` applied, checksum made anew
    (what a diverged or buggy writer would leave: a valid file with bad values)."""
    tensors, meta = load_weights(path)
    change(tensors)
    save_weights(path, tensors, meta)


def first(tensors: dict) -> torch.Tensor:
    return tensors[sorted(k for k in tensors if tensors[k].is_floating_point())[0]]


def finite_results(out: Path) -> dict:
    data = json.loads((out / "results.json").read_text())
    assert all(math.isfinite(r["final_val_loss"]) for r in data["runs"])
    return data


@pytest.mark.parametrize("poison, needle", [
    ("nan", "NaN/Inf values"), ("flip", "SHA-256"), ("truncate", "corrupt or not safetensors"),
])
def test_a_poisoned_base_is_refused_before_training_and_deleting_it_works(
        run_cli, cache_copy, tmp_path, capsys, monkeypatch, poison, needle):
    cache, base = cache_copy
    if poison == "nan":
        rewrite(base, lambda t: first(t).view(-1).__setitem__(0, float("nan")))
    elif poison == "flip":                  # a flipped value, checksum left as it was
        data = bytearray(base.read_bytes())
        data[-3] ^= 0x40
        base.write_bytes(bytes(data))
    else:
        base.write_bytes(base.read_bytes()[:1000])
    import loralab.experiment.base as base_mod

    trained = []
    monkeypatch.setattr(base_mod, "train", lambda *a, **k: trained.append(1) or 1 / 0)
    out = tmp_path / "o"
    assert finetune(run_cli, cache, out) == 2
    line = one_error_line(capsys.readouterr().err)
    assert needle in line and "delete it and rerun" in line and str(base) in line
    assert trained == [] and not out.exists()       # before any training; --out not left
    monkeypatch.undo()
    if poison == "truncate":                         # the same rebuild as the two others
        return
    base.unlink()                                    # the advice
    assert finetune(run_cli, cache, out) == 0
    capsys.readouterr()
    finite_results(out)
    load_weights(base)                               # rebuilt, and verifies


def test_a_base_of_another_seed_under_this_name_is_detected(run_cli, cache_copy, tmp_path,
                                                             capsys):
    cache, base = cache_copy
    seed1 = ExperimentConfig(preset="quick", ranks=(2,), targets=("attn",), seed=1)
    wrong = cache / f"base-{seed1.base_key()}.safetensors"
    wrong.write_bytes(base.read_bytes())             # seed 0's base under seed 1's name
    out = tmp_path / "o"
    assert finetune(run_cli, cache, out, "--seed", "1") == 2
    line = one_error_line(capsys.readouterr().err)
    assert "another configuration" in line and "seed 0" in line and "delete it" in line
    wrong.unlink()
    assert finetune(run_cli, cache, out, "--seed", "1") == 0
    capsys.readouterr()
    assert load_weights(wrong)[1]["seed"] == 1


def _interrupt_after_full(cache: Path, out: Path) -> Path:
    config = ExperimentConfig(preset="quick", ranks=(2,), targets=("attn",))
    options = RunOptions(device="cpu", cache_dir=str(cache))

    def progress(label: str, steps: int) -> None:
        if label.startswith("lora-r2"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, options, out_dir=out, progress=progress)
    state = out / ".resume" / config.key()
    assert (state / "full.done.safetensors").is_file()
    return state


def test_resume_state_of_a_replaced_base_is_not_resumed(run_cli, cache_copy, reference,
                                                        tmp_path, capsys, caplog):
    cache, base = cache_copy
    rewrite(base, lambda t: first(t).add_(0.05))     # a valid base, but not the rebuilt one
    out = tmp_path / "o"
    _interrupt_after_full(cache, out)                # 'full' trained on that base
    base.unlink()                                    # "delete the base and rerun"
    with caplog.at_level(logging.WARNING, logger="loralab"):
        assert finetune(run_cli, cache, out) == 0
    capsys.readouterr()
    assert "trained on another base" in caplog.text
    full = next(r for r in finite_results(out)["runs"] if r["label"] == "full")
    ref = next(r for r in reference[2]["runs"] if r["label"] == "full")
    assert full["final_val_loss"] == pytest.approx(ref["final_val_loss"], abs=1e-9)
    assert full["resumed_from"] is None and not (out / ".resume").exists()


def test_a_nan_resume_file_is_refused_and_its_advice_works(run_cli, cache_copy, tmp_path,
                                                           capsys):
    cache, _ = cache_copy
    out = tmp_path / "o"
    state = _interrupt_after_full(cache, out)
    rewrite(state / "full.done.safetensors",
            lambda t: first(t).view(-1).__setitem__(0, float("inf")))
    assert finetune(run_cli, cache, out) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "NaN/Inf" in line and f"delete the resume folder {str(state)!r}" in line
    assert not (out / "results.json").exists()
    import shutil

    shutil.rmtree(state)                             # the advice
    assert finetune(run_cli, cache, out) == 0
    capsys.readouterr()
    finite_results(out)


def test_a_diverging_pretraining_is_not_cached(run_cli, tiny_preset, tmp_path, capsys,
                                               monkeypatch):
    from dataclasses import replace

    from loralab.experiment import presets

    bad = replace(tiny_preset, pretrain=replace(tiny_preset.pretrain, lr=1e9, warmup_steps=0))
    monkeypatch.setitem(presets.PRESETS, "quick", bad)
    cache = tmp_path / "c"
    assert finetune(run_cli, cache, tmp_path / "o") == 2
    line = one_error_line(capsys.readouterr().err)
    assert "diverged" in line and "learning rate" in line
    assert list(cache.glob("base-*.safetensors")) == []

"""Class 7: every message says what to change.

A seed out of range names ``--seed`` (not "Overflow when unpacking long long"); a fit or a
training run that diverges says so and names the learning rate (not "A1 has 32 NaN/Inf
entries"); Ctrl-C during pretraining names the checkpoint it saved beside the cached base (not
the ``--out`` folder), and the same command then resumes from it.
"""

from __future__ import annotations

import signal

import pytest
from conftest import TINY_ARGS, one_error_line
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loralab.errors import LoralabError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@settings(max_examples=8, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cmd=st.sampled_from(["demo", "svd", "spectrum", "heatmap", "fit", "finetune", "report"]),
       seed=st.one_of(st.integers(min_value=2**32, max_value=2**80),
                      st.integers(min_value=-2**80, max_value=-1)))
def test_a_seed_out_of_range_names_the_flag(run_cli, capsys, tmp_path, no_work, cmd, seed):
    assert run_cli([cmd, "--seed", str(seed), "--out", str(tmp_path / "x")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "--seed" in line and "0..4294967295" in line and "long long" not in line


def test_a_diverging_fit_says_so_and_names_the_learning_rate():
    import torch

    from loralab.lowrank import fit_lowrank

    w = torch.randn(12, 10, generator=torch.Generator().manual_seed(0))
    with pytest.raises(LoralabError, match=r"diverged at step \d+.*lower the learning rate "
                                           r"\(--lr.*--alpha"):
        fit_lowrank(w, [2, 4], steps=5, alpha=1e300)


def test_the_cli_refuses_a_learning_rate_that_would_diverge(run_cli, capsys, tmp_path, no_work):
    assert run_cli(["fit", "--lr", "1e6", "--out", str(tmp_path / "f.png")]) == 2
    assert "--lr" in one_error_line(capsys.readouterr().err)


def test_a_diverging_fine_tuning_run_names_the_run_and_the_learning_rate(
        run_cli, cache_copy, tiny_preset, tmp_path, capsys, monkeypatch):
    from dataclasses import replace

    from loralab.experiment import presets

    monkeypatch.setitem(presets.PRESETS, "quick",
                        replace(tiny_preset, lora=replace(tiny_preset.lora, lr=1e12)))
    cache, _ = cache_copy
    out = tmp_path / "o"
    assert run_cli(["finetune", *TINY_ARGS, "--cache", str(cache), "--out", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "run lora-r2-attn: training diverged at step" in line and "learning rate" in line
    assert not (out / "results.json").exists()


def test_ctrl_c_during_pretraining_names_the_checkpoint_beside_the_base(run_cli, tiny_preset,
                                                                        tmp_path, capsys,
                                                                        monkeypatch):
    import loralab.experiment.base as base

    real = base.train

    def interrupted(*args, **kwargs):
        def on_step(step, loss):
            if step == 10:
                signal.raise_signal(signal.SIGINT)       # what Ctrl-C does
        return real(*args, **dict(kwargs, on_step=on_step))

    monkeypatch.setattr(base, "train", interrupted)
    cache, out = tmp_path / "cache", tmp_path / "o"
    argv = ["finetune", *TINY_ARGS, "--cache", str(cache), "--out", str(out)]
    assert run_cli(argv) == 130
    err = capsys.readouterr().err
    (ckpt,) = cache.glob("base-*.ckpt.json")
    assert f"checkpoint saved in {ckpt}" in err and str(out) not in err
    monkeypatch.setattr(base, "train", real)
    assert run_cli(argv) == 0                              # the same command resumes
    capsys.readouterr()
    assert not ckpt.exists() and list(cache.glob("base-*.safetensors"))


def test_ctrl_c_between_runs_names_the_resume_folder(tmp_path):
    from loralab.experiment import ExperimentConfig
    from loralab.experiment.resume import resume_hint as _resume_hint
    from loralab.lm.checkpoint import TrainingInterrupted

    config = ExperimentConfig(preset="quick", ranks=(2,), targets=("attn",))
    state = tmp_path / ".resume" / config.key()
    assert "before a checkpoint was saved" in _resume_hint(KeyboardInterrupt(), tmp_path,
                                                           config)
    state.mkdir(parents=True)
    (state / "full.done.safetensors").write_bytes(b"")
    assert f"kept in {state}" in _resume_hint(KeyboardInterrupt(), tmp_path, config)
    saved = TrainingInterrupted(str(state / "lora-r2-attn.ckpt.json"))
    assert f"checkpoint saved in {state / 'lora-r2-attn.ckpt.json'}" in _resume_hint(
        saved, tmp_path, config)

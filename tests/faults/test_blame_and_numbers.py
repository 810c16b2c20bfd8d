"""Classes 4, 6 and 7 (second pass): no internal error, no non-finite number, no wrong
blame or advice.

Each case was an ``internal error`` line, a silent ``inf``/``NaN``/lost ``W0``, or a message
that pointed at the wrong cause (the learning rate for a broken file, ``--dtype float64``
when it was given, ``--hidden-size 0``); each is now one line that names the real cause.
"""

from __future__ import annotations

import errno
import io
import os

import numpy as np
import pytest
import torch
from conftest import TINY_ARGS, one_error_line
from torch import nn

from loralab.errors import LoralabError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(run_cli, capsys, argv):
    code = run_cli(argv)
    return code, capsys.readouterr()


@pytest.mark.parametrize("fill, dtype, match", [
    (0.0, "float32", "is all zeros: Q\\(0\\) = 0 exactly"),
    (1e-40, "float64", "underflow: .* quant computes in float32 whatever --dtype says"),
    (1e-40, "float32", "underflow: .* quant computes in float32 whatever --dtype says"),
])
def test_quant_on_zero_or_tiny_matrices_is_one_line_with_the_right_advice(
        run_cli, capsys, tmp_path, fill, dtype, match):
    import re

    np.save(tmp_path / "w.npy", np.full((8, 8), fill))
    code, cap = _run(run_cli, capsys, ["quant", "--bits", "8", "--ranks", "2", "--input",
                                       str(tmp_path / "w.npy"), "--dtype", dtype, "--out",
                                       str(tmp_path / "q.png")])
    assert code == 2
    line = one_error_line(cap.err)
    assert re.search(match, line) and "use --dtype float64" not in line


def test_save_adapter_refuses_a_nan_factor(tmp_path):
    from loralab.lora import AdapterConfig, inject_lora, save_adapter

    model = nn.Sequential(nn.Linear(4, 4))
    inject_lora(model, AdapterConfig(r=2, target_modules=["0"]))
    with torch.no_grad():
        model[0].factors("default")[1][0, 0] = float("nan")
    with pytest.raises(LoralabError, match=r"lora_B.weight' holds 1 NaN/Inf values .* refusing "
                       "to save a broken adapter"):
        save_adapter(model, tmp_path / "ad")
    assert not (tmp_path / "ad").exists()


def test_merge_refuses_an_update_that_would_wipe_w0():
    from loralab.lora import AdapterConfig, inject_lora, merge_lora

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8))
    inject_lora(model, AdapterConfig(r=2, lora_alpha=2, target_modules=["0"]))
    with torch.no_grad():
        a, b = model[0].factors("default")
        a.fill_(1e5)
        b.fill_(1e5)                                   # ΔW = 2e10, W0 ~ 0.3: lost in fp32
    w0 = model[0].base.weight.detach().clone()
    with pytest.raises(LoralabError, match="merging would destroy W0: the update reaches "
                       r"2e\+10 while W0 is at most .* keep the adapter unmerged"):
        merge_lora(model)
    assert torch.equal(model[0].base.weight, w0) and not model[0].merged


def test_a_refused_run_leaves_no_resume_stamp(run_cli, cache_copy, tiny_preset, tmp_path,
                                              capsys, monkeypatch):
    from dataclasses import replace

    from loralab.experiment import presets

    monkeypatch.setitem(presets.PRESETS, "quick", replace(
        tiny_preset, full=replace(tiny_preset.full, lr=1e12),
        lora=replace(tiny_preset.lora, lr=1e12)))
    cache, _ = cache_copy
    out = tmp_path / "o"
    code, cap = _run(run_cli, capsys, ["finetune", *TINY_ARGS, "--cache", str(cache), "--out",
                                       str(out)])
    assert code == 2 and "diverged" in one_error_line(cap.err)
    left = sorted(p.name for p in out.rglob("*") if p.is_file())
    # nothing, or what a rerun resumes from (a side-by-side peer stopped with a checkpoint);
    # never a lone base.json stamp
    assert left == [] or any(n.endswith((".ckpt.json", ".done.safetensors")) for n in left), \
        left


@pytest.mark.parametrize("value", ["0", "-5", "nan"])
def test_a_memory_limit_of_zero_is_refused_not_blamed_on_the_flags(run_cli, capsys, tmp_path,
                                                                   monkeypatch, value):
    monkeypatch.setenv("LORALAB_MEMORY_LIMIT", value)
    code, cap = _run(run_cli, capsys, ["svd", "--hidden-size", "8", "--ranks", "2", "--out",
                                       str(tmp_path / "s.png")])
    line = one_error_line(cap.err)
    assert code == 2 and f"LORALAB_MEMORY_LIMIT={value!r} is not allowed" in line
    assert "--hidden-size 0" not in line


def test_a_full_disk_names_the_path(run_cli, capsys, tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    code, cap = _run(run_cli, capsys, ["svd", "--hidden-size", "8", "--ranks", "2", "--out",
                                       str(tmp_path / "s.png"), "--json",
                                       str(tmp_path / "s.json")])
    line = one_error_line(cap.err)
    assert code == 2 and f"cannot write {str(tmp_path / 's.json')!r}: No space left" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []       # no temp file left


@pytest.mark.parametrize("command", ["svd", "spectrum", "heatmap"])
def test_zero_norms_print_na_not_zero_percent(run_cli, capsys, tmp_path, command):
    np.save(tmp_path / "z.npy", np.zeros((8, 8)))
    code, cap = _run(run_cli, capsys, [command, "--input", str(tmp_path / "z.npy"), "--ranks",
                                       "2", "--out", str(tmp_path / "z.png")])
    assert code == 0, cap.err
    assert "n/a" in cap.out and "0.00%" not in cap.out and " 0.0%" not in cap.out.split(
        "z.npy")[-1].splitlines()[0]


def test_iters_is_refused_by_the_parser_with_the_range_it_allows(run_cli, capsys):
    code, cap = _run(run_cli, capsys, ["quant", "--iters", "101"])
    assert code == 2 and "--iters must be 1..100" in cap.err


@pytest.mark.parametrize("command", ["finetune", "demo", "report"])
def test_an_empty_out_is_refused_by_every_command(run_cli, capsys, no_work, command):
    extra = TINY_ARGS if command == "finetune" else []
    code, cap = _run(run_cli, capsys, [command, *extra, "--out", ""])
    assert code == 2 and "--out" in cap.err and "''" in cap.err


def test_the_progress_bar_writes_a_few_lines_when_not_a_terminal():
    from loralab.cli._progress import progress_bar

    sink = io.StringIO()                                 # a pipe or a CI log: not a tty
    bar = progress_bar(500, desc="finetune", file=sink)
    for _ in range(500):
        bar.update(1)
    bar.close()
    chunks = [c for c in sink.getvalue().replace("\r", "\n").split("\n") if c.strip()]
    assert len(chunks) <= 3                       # was one chunk per update: 500

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert progress_bar(5, file=Terminal()).mininterval < 1      # live on a terminal

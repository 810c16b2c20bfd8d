"""loralab.threads: the default thread rule (one thread for tiny models) and its helpers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from loralab.errors import LoralabError
from loralab.lm.model import TinyLM, TinyLMConfig
from loralab.threads import (
    SMALL_NUMEL,
    default_threads,
    largest_matrix_numel,
    resolve_threads,
    set_threads,
    small_matrix_threads,
    torch_threads,
)


def test_tiny_models_get_one_thread():
    assert default_threads(0) == 1
    assert default_threads(SMALL_NUMEL) == 1
    assert default_threads(512 * 128, available=8) == 1


def test_larger_models_keep_every_free_core():
    assert default_threads(SMALL_NUMEL + 1, available=8, load=0.0) == 8
    assert default_threads(10**9, available=0, load=0.0) == 1         # never below one
    with torch_threads(2):
        assert default_threads(SMALL_NUMEL + 1, load=0.0) == 2         # torch's count now


def test_a_busy_machine_takes_cores_away():
    assert default_threads(SMALL_NUMEL + 1, available=2, load=0.4) == 2    # quiet
    assert default_threads(SMALL_NUMEL + 1, available=2, load=1.0) == 1    # one other job
    assert default_threads(SMALL_NUMEL + 1, available=2, load=3.0) == 1    # never below one
    assert default_threads(SMALL_NUMEL + 1, available=8, load=2.6) == 5
    assert default_threads(SMALL_NUMEL + 1, available=4, load=-1.0) == 4   # nonsense load
    assert default_threads(SMALL_NUMEL, available=8, load=0.0) == 1        # tiny: always 1


def test_both_presets_are_tiny():
    from loralab.experiment.presets import PRESETS

    for spec in PRESETS.values():
        model = TinyLM(spec.model)
        assert largest_matrix_numel(model) <= SMALL_NUMEL
        assert default_threads(largest_matrix_numel(model), available=4) == 1


def test_largest_matrix_ignores_vectors():
    model = nn.Sequential(nn.Linear(3, 5), nn.LayerNorm(5), nn.Linear(5, 7))
    assert largest_matrix_numel(model) == 35
    assert largest_matrix_numel(nn.LayerNorm(4096)) == 0
    big = TinyLM(TinyLMConfig(d_model=512, n_layers=1, n_heads=4, block_size=8))
    assert largest_matrix_numel(big) == 4 * 512 * 512 > SMALL_NUMEL


def test_set_threads_applies_the_rule_or_the_request(monkeypatch):
    monkeypatch.setattr("loralab.threads._load_average", lambda: 0.0)
    with torch_threads(2):
        assert set_threads(0, SMALL_NUMEL) == 1 and torch.get_num_threads() == 1
        assert set_threads(2, SMALL_NUMEL) == 2 and torch.get_num_threads() == 2
        assert set_threads(0, SMALL_NUMEL + 1) == 2


def test_bad_counts_are_refused():
    with pytest.raises(LoralabError):
        default_threads(-1)
    with pytest.raises(LoralabError):
        set_threads(-1, 10)
    with pytest.raises(LoralabError, match="requested=-2"):
        resolve_threads(-2)


def test_small_matrices_get_one_thread_and_large_ones_torchs_count():
    assert small_matrix_threads(1) == 1
    assert small_matrix_threads(SMALL_NUMEL) == 1
    assert small_matrix_threads(SMALL_NUMEL + 1) is None
    with torch_threads(2), torch_threads(small_matrix_threads(SMALL_NUMEL + 1)):
        assert torch.get_num_threads() == 2                            # None: left alone


def test_an_unknown_model_shares_the_free_cores(monkeypatch):
    monkeypatch.setattr("loralab.threads.free_cores", lambda: 7)
    assert resolve_threads(0) == 7                                     # finetune, one process
    assert resolve_threads(0, processes=2) == 3                        # torchrun: 7 // 2
    assert resolve_threads(0, processes=8) == 1                        # never below one
    assert resolve_threads(0, processes=0) == 7                        # nonsense: one process
    assert resolve_threads(5, processes=2) == 5                        # asked: as asked
    assert resolve_threads(0, SMALL_NUMEL, processes=2) == 1           # model known: the rule
    with torch_threads(1):
        assert set_threads(0, processes=2) == 3 and torch.get_num_threads() == 3


def test_report_takes_threads(run_cli, tmp_path):
    from loralab.cli.report import _threads

    args = type("A", (), {"threads": 0, "preset": "default"})()
    assert _threads(args) == 1
    args.threads = 3
    assert _threads(args) == 3
    assert run_cli(["report", "--threads", "-1", "--out", str(tmp_path / "r")]) == 2

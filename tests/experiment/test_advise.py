"""loralab advise's library (loralab.experiment.advise) on the tiny LM: the pattern it writes
is read the same by PEFT and by loralab, the check compares equal counts."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from loralab.experiment.advise import advise, experiment_config, probe_spectra
from loralab.experiment.context import RunContext
from loralab.experiment.workload import load_workload
from loralab.lora import config_from_peft, inject_lora, lora_layers
from loralab.results import RunOptions
from loralab.results.advice import AdviceConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def advice(cache):
    config = AdviceConfig(preset="quick", targets="attn+mlp", probe_steps=2, steps=4)
    return advise(config, RunOptions(device="cpu", cache_dir=str(cache)))


def _base(cache: Path):
    config = experiment_config(AdviceConfig(preset="quick"))
    work = load_workload(config, RunContext(options=RunOptions(device="cpu",
                                                               cache_dir=str(cache))))
    return copy.deepcopy(work.base), work, config


def test_pattern_keeps_scale_and_matches_uniform_count(advice) -> None:
    r_u, alpha = advice.uniform_rank, advice.lora_alpha
    assert len(advice.modules) == 12                     # 2 blocks × q, k, v, o, up, down
    for m in advice.modules:
        assert 1 <= m.rank <= min(m.d_in, m.d_out)
        assert m.alpha / m.rank == pytest.approx(alpha / r_u)   # the uniform run's scale
        assert 0 < m.energy_kept <= 1 + 1e-12
    c = advice.check
    assert c.uniform_params == sum((m.d_in + m.d_out) * r_u for m in advice.modules)
    assert c.advised_params == sum((m.d_in + m.d_out) * m.rank for m in advice.modules)
    assert abs(c.param_ratio - 1) < 0.05
    assert c.uniform_val_loss < c.base_val_loss and c.advised_val_loss < c.base_val_loss


def test_peft_and_loralab_read_the_same_ranks_and_scales(advice, cache, tmp_path) -> None:
    peft = pytest.importorskip("peft")
    (tmp_path / "adapter_config.json").write_text(json.dumps(advice.adapter_config))
    base, _, _ = _base(cache)
    ours = copy.deepcopy(base)
    inject_lora(ours, config_from_peft(advice.adapter_config))
    theirs = peft.inject_adapter_in_model(peft.LoraConfig.from_pretrained(str(tmp_path)),
                                          copy.deepcopy(base))
    peft_layers = {n: m for n, m in theirs.named_modules()
                   if isinstance(m, peft.tuners.lora.LoraLayer)}
    layers = lora_layers(ours)
    assert set(layers) == set(peft_layers) == set(advice.rank_pattern)
    for path, rank in advice.rank_pattern.items():
        assert layers[path].r["default"] == peft_layers[path].r["default"] == rank
        assert layers[path].scaling["default"] == pytest.approx(
            peft_layers[path].scaling["default"])
        assert layers[path].scaling["default"] == pytest.approx(
            advice.lora_alpha / advice.uniform_rank)
    count = sum(p.numel() for n, p in theirs.named_parameters() if "lora_" in n)
    assert count == advice.check.advised_params


def test_full_probe_spectra_are_the_updates_singular_values(cache) -> None:
    base, work, config = _base(cache)
    spectra = probe_spectra(work, config, AdviceConfig(preset="quick", probe="full",
                                                       probe_steps=2), RunContext())
    assert len(spectra) == 12
    for path, s in spectra.items():
        w = dict(base.named_modules())[path].weight
        assert s.shape == (min(w.shape),) and bool((s[:-1] >= s[1:]).all())
        assert float(s[0]) > 0
    assert all(torch.equal(a, b) for a, b in zip(base.parameters(), work.base.parameters(),
                                                 strict=True))   # the base is untouched

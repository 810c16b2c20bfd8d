"""The merge study: two adapters trained on their own texts, every combination scored."""

from __future__ import annotations

import math

import pytest
import torch

from loralab.experiment.merge_study import ADAPTERS, merge_study, train_two_adapters
from loralab.lora import lora_layers
from loralab.lora.weighted import COMBINATIONS

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_both_adapters_train_on_every_target_and_differ() -> None:
    model, losses = train_two_adapters(steps=2)
    assert set(losses) == set(ADAPTERS) and all(math.isfinite(v) for v in losses.values())
    layers = lora_layers(model)
    assert len(layers) == 2 * 6
    for layer in layers.values():
        b_en, b_pl = layer.factors("english")[1], layer.factors("piglatin")[1]
        assert b_en.abs().max() > 0 and b_pl.abs().max() > 0       # B moved from 0
        assert not torch.equal(b_en, b_pl)


def test_every_combination_is_scored_and_cat_is_exact() -> None:
    errors, _ = merge_study(steps=2)
    assert [r.combination for r in errors.rows] == list(COMBINATIONS)
    rows = {r.combination: r for r in errors.rows}
    assert rows["cat"].relative < 1e-5 < rows["linear"].relative
    assert rows["cat"].rank == 16 and rows["svd"].rank == 8

"""LoRAEmbedding: PEFT's init (A = 0, B ~ N(0, 1)), the lookup formula, what it refuses."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from loralab.errors import LoralabError
from loralab.lora import LoRAEmbedding


def test_init_is_zero_a_and_gaussian_b() -> None:
    torch.manual_seed(0)
    base = nn.Embedding(50, 40)
    layer = LoRAEmbedding(base, r=8, lora_alpha=8)
    a, b = layer.factors()
    assert a.shape == (8, 50) and b.shape == (40, 8)             # (r, V), (d, r)
    assert torch.count_nonzero(a) == 0
    assert abs(float(b.detach().std()) - 1.0) < 0.1
    ids = torch.tensor([[1, 4, 49]])
    assert torch.equal(layer(ids), base(ids))                     # the base at init
    assert LoRAEmbedding.supports_dora and not LoRAEmbedding.supports_lora_bias  # DoRA: issue 26


def test_forward_is_the_table_lookup_plus_the_update() -> None:
    torch.manual_seed(0)
    base = nn.Embedding(10, 6, padding_idx=0)
    layer = LoRAEmbedding(base, r=3, lora_alpha=6)
    with torch.no_grad():
        layer.factors()[0].normal_()
    ids = torch.tensor([[0, 3, 9], [4, 4, 1]])
    a, b = layer.factors()
    want = base.weight[ids] + 2.0 * (a.t()[ids] @ b.t())         # E0[x] + s·Aᵀ[x] Bᵀ
    torch.testing.assert_close(layer(ids), want)


@pytest.mark.filterwarnings("ignore:lora_bias=True on a Embedding without a bias")
def test_refusals_name_the_value() -> None:
    with pytest.raises(LoralabError, match="lora_bias=True is not supported on nn.Embedding"):
        LoRAEmbedding(nn.Embedding(4, 3), r=1, lora_alpha=1, lora_bias=True)
    with pytest.raises(LoralabError, match="init_lora_weights='olora' is not supported"):
        LoRAEmbedding(nn.Embedding(4, 3), r=1, lora_alpha=1, init_lora_weights="olora")
    # DoRA on an embedding is PEFT's DoraEmbeddingLayer since issue 26 (no longer refused)
    dora = LoRAEmbedding(nn.Embedding(4, 3), r=1, lora_alpha=1, use_dora=True)
    assert tuple(dora.lora_magnitude_vector["default"].shape) == (3,)

"""LayerSpec (loralab.lora.spec): one adapter's settings on one layer, built once."""

from __future__ import annotations

import math

import pytest
import torch
from lora_tiny import Tiny
from torch import nn

from loralab.errors import LoralabError
from loralab.lora import AdapterConfig, LoRAConv, LoRAEmbedding, LoRALinear, inject_lora
from loralab.lora.init_option import InitOption
from loralab.lora.spec import LayerSpec


def test_keyword_arguments_and_spec_build_the_same_layer() -> None:
    torch.manual_seed(0)
    base = nn.Linear(6, 4)
    spec = LayerSpec(r=2, lora_alpha=3.0, lora_dropout=0.1, use_rslora=True,
                     init=InitOption("gaussian"))
    assert LayerSpec.of(2, 3.0, 0.1, True, "gaussian") == spec
    a = LoRALinear(base, spec, generator=torch.Generator().manual_seed(5))
    b = LoRALinear(base, r=2, lora_alpha=3.0, lora_dropout=0.1, use_rslora=True,
                   init_lora_weights="gaussian", generator=torch.Generator().manual_seed(5))
    assert a.scaling == b.scaling == {"default": 3.0 / math.sqrt(2)} == {"default": spec.scaling}
    assert torch.equal(a.factors()[0], b.factors()[0])
    assert a.init == {"default": InitOption("gaussian")}
    assert a.init_lora_weights == {"default": "gaussian"}
    emb = LoRAEmbedding(nn.Embedding(5, 3), LayerSpec(1, 1.0))
    conv = LoRAConv(nn.Conv2d(2, 3, 3), LayerSpec(1, 1.0), adapter_name="x")
    assert emb.r == {"default": 1} and conv.adapter_names == ["x"]
    with pytest.raises(LoralabError, match="not both"):
        LoRALinear(base, spec, 2.0)


def test_config_gives_each_module_its_spec(model: Tiny) -> None:
    config = AdapterConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                           rank_pattern={"layers.1.q_proj": 2}, alpha_pattern={"v_proj": 3},
                           lora_dropout=0.05, use_dora=True)
    assert config.layer_spec("layers.1.q_proj") == LayerSpec(
        2, 8, 0.05, False, InitOption(), False, True)
    assert config.layer_spec("layers.0.v_proj", autocast_adapter_dtype=False) == LayerSpec(
        4, 3, 0.05, False, InitOption(), False, True, False)
    inject_lora(model, config)
    q1, v0 = model.layers[1].q_proj, model.layers[0].v_proj
    assert (q1.r["default"], q1.lora_alpha["default"]) == (2, 8)
    assert (v0.r["default"], v0.lora_alpha["default"]) == (4, 3)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"r": 0, "lora_alpha": 1}, "r=0"), ({"r": 1, "lora_alpha": 0}, "lora_alpha=0"),
    ({"r": 1, "lora_alpha": 1, "lora_dropout": 1.0}, "lora_dropout=1.0"),
    ({"r": 1, "lora_alpha": 1, "use_dora": 1}, "use_dora=1"),
    ({"r": 1, "lora_alpha": 1, "init": "pissa"}, "give an InitOption"),
])
def test_bad_spec_is_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(LoralabError, match=match):
        LayerSpec(**kwargs)

"""PEFT's tensor names (loralab.lora.keys): one mapping, both ways, used by save, load and
lora_state_dict; the adapter-name bug (``"def"`` picked ``"default"``'s tensors) as a test."""

from __future__ import annotations

import pytest
import torch
from lora_tiny import Tiny
from torch import nn

from loralab.lora import AdapterConfig, add_adapter, inject_lora, lora_layers, lora_state_dict
from loralab.lora.keys import (
    PARTS,
    PREFIX,
    adapter_tensors,
    lora_key,
    memory_name,
    parse_lora_key,
    peft_param_key,
)


def test_lora_state_dict_of_def_is_not_defaults() -> None:
    """Regression (issue 28): adapters ``default`` and ``def``; asking for ``def`` gave
    ``default``'s tensors too, under keys like ``0.lora_Aault.weight``."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4))
    inject_lora(model, AdapterConfig(r=2, target_modules=["0", "2"]))
    add_adapter(model, "def", AdapterConfig(r=3, target_modules=["0"]))
    sd = lora_state_dict(model, "def")
    assert {k: tuple(v.shape) for k, v in sd.items()} == {
        "0.lora_A.weight": (3, 6), "0.lora_B.weight": (5, 3)}
    a, b = model[0].factors("def")
    assert torch.equal(sd["0.lora_A.weight"], a)
    assert torch.equal(sd["0.lora_B.weight"], b)
    default = lora_state_dict(model, "default")
    assert sorted(default) == ["0.lora_A.weight", "0.lora_B.weight", "2.lora_A.weight",
                               "2.lora_B.weight"]
    assert tuple(default["0.lora_A.weight"].shape) == (2, 6)


@pytest.mark.parametrize("embedding", [False, True])
@pytest.mark.parametrize("path", ["", "layers.0.q_proj"])
def test_key_round_trip(path: str, embedding: bool) -> None:
    for part in PARTS:
        if embedding and part == "bias":
            with pytest.raises(KeyError):
                lora_key(path, part, embedding)
            continue
        key = lora_key(path, part, embedding)
        assert key.startswith(PREFIX)
        assert parse_lora_key(key) == (path, part, embedding and part != "magnitude")
    assert parse_lora_key(PREFIX + "layers.0.q_proj.base_layer.bias") is None
    assert parse_lora_key("layers.0.q_proj.lora_A.weight") is None          # no prefix


def test_keys_are_peft_names() -> None:
    assert lora_key("q", "A") == "base_model.model.q.lora_A.weight"
    assert lora_key("q", "B") == "base_model.model.q.lora_B.weight"
    assert lora_key("q", "bias") == "base_model.model.q.lora_B.bias"
    assert lora_key("q", "magnitude") == "base_model.model.q.lora_magnitude_vector"
    assert lora_key("emb", "A", True) == "base_model.model.emb.lora_embedding_A"
    assert lora_key("emb", "B", True) == "base_model.model.emb.lora_embedding_B"
    assert peft_param_key("q.base.bias", {"q"}) == "base_model.model.q.base_layer.bias"
    assert peft_param_key("q.bias", {"q"}) == "base_model.model.q.base_layer.bias"
    assert peft_param_key("norm.bias", {"q"}) == "base_model.model.norm.bias"


def test_memory_names_are_the_layers_parameter_names(model: Tiny) -> None:
    inject_lora(model, AdapterConfig(r=2, target_modules=["q_proj"], use_dora=True))
    add_adapter(model, "def", AdapterConfig(r=3, target_modules=["q_proj"]))
    layer = lora_layers(model)["layers.0.q_proj"]
    params = dict(layer.named_parameters())
    for adapter, parts in (("default", ("A", "B", "magnitude")), ("def", ("A", "B"))):
        got = adapter_tensors("layers.0.q_proj", layer, adapter)
        assert sorted(got) == sorted(lora_key("layers.0.q_proj", p) for p in parts)
        for part in parts:
            assert params[memory_name(part, adapter)] is got[lora_key("layers.0.q_proj", part)]

"""What a model carries (loralab.lora.state): its LoRA layers and each adapter's config."""

from __future__ import annotations

import pytest
from lora_tiny import Tiny

from loralab.errors import LoralabError
from loralab.lora import AdapterConfig, add_adapter, inject_lora, lora_layers, unload
from loralab.lora.state import adapters_of, injected_config


def test_configs_are_kept_per_adapter_and_forgotten_on_unload(model: Tiny) -> None:
    assert injected_config(model) is None and lora_layers(model) == {}
    first = AdapterConfig(r=2, target_modules=["q_proj"])
    second = AdapterConfig(r=3, target_modules=["v_proj"])
    inject_lora(model, first)
    add_adapter(model, "other", second)
    state = adapters_of(model)
    assert list(state.configs) == ["default", "other"] and state.active == ["default"]
    assert injected_config(model) is first and injected_config(model, "other") is second
    assert sorted(lora_layers(model)) == [f"layers.{i}.{m}" for i in (0, 1)
                                          for m in ("q_proj", "v_proj")]
    assert state.check("other") == ["other"]
    with pytest.raises(LoralabError, match="adapter 'x' is not allowed; the model's adapters "
                                           "are: default, other"):
        state.check(["default", "x"])
    unload(model)
    assert injected_config(model) is None and lora_layers(model) == {}

"""inject_lora and the model-level helpers (loralab.lora.inject): freezing, merging, counting."""

from __future__ import annotations

import copy
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from lora_tiny import Tiny, assert_same, randomize, snapshot  # noqa: E402
from torch import nn  # noqa: E402

from loralab.errors import LoralabError  # noqa: E402
from loralab.lora import (  # noqa: E402
    AdapterConfig,
    count_parameters,
    format_parameter_count,
    inject_lora,
    lora_layers,
    lora_state_dict,
    mark_only_lora_trainable,
    merge_lora,
    unload_lora,
    unmerge_lora,
)


def test_inject_freezes_all_but_lora(model: Tiny) -> None:
    inject_lora(model, AdapterConfig(r=2, target_modules=["q_proj"]))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"layers.{i}.q_proj.lora_{ab}.default.weight" for i in (0, 1)
                         for ab in "AB"}
    mark_only_lora_trainable(model, bias="lora_only")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {f"layers.{i}.q_proj.base.bias" for i in (0, 1)} <= trainable
    assert "head.bias" not in trainable
    mark_only_lora_trainable(model, bias="all")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"head.bias", "norm.bias", "layers.0.q_proj.base.bias"} <= trainable
    assert "head.weight" not in trainable


def test_inject_twice_and_pissa_rank_errors(model: Tiny) -> None:
    snap = snapshot(model)
    with pytest.raises(LoralabError, match="'head' has weight \\(3, 8\\) and r=4"):
        inject_lora(model, AdapterConfig(r=4, target_modules=["q_proj", "head"],
                                         init_lora_weights="pissa"))
    assert_same(model, snap)
    inject_lora(model, AdapterConfig(r=2, target_modules=["q_proj"]))
    with pytest.raises(LoralabError, match="already has"):
        inject_lora(model, AdapterConfig(r=2, target_modules=["q_proj"]))


def test_tied_weight_refuses_merge_and_pissa() -> None:
    emb, head = nn.Embedding(10, 6), nn.Linear(6, 10, bias=False)
    head.weight = emb.weight  # tied, as in many LMs
    model = nn.ModuleDict({"emb": emb, "head": head})
    snap = snapshot(model)
    with pytest.raises(LoralabError, match="'head', which is shared with 'emb.weight'"):
        inject_lora(model, AdapterConfig(r=2, target_modules=["head"], init_lora_weights="pissa"))
    assert_same(model, snap)
    inject_lora(model, AdapterConfig(r=2, target_modules=["head"]))
    randomize(model)
    before = emb.weight.detach().clone()
    with pytest.raises(LoralabError, match="'head' is shared with 'emb.weight'"):
        merge_lora(model)
    with pytest.raises(LoralabError, match="keep this model unmerged"):
        unload_lora(model)
    assert torch.equal(emb.weight, before) and not model["head"].merged


def test_merge_unmerge_unload_model(model: Tiny) -> None:
    x = torch.randn(4, 8)
    w_head = model.head.weight.detach().clone()
    inject_lora(model, AdapterConfig(r=2, target_modules=["q_proj", "head"]))
    randomize(model)
    y = model(x)
    assert merge_lora(model).keys() == set(lora_layers(model))
    torch.testing.assert_close(model(x), y, rtol=0, atol=1e-5)
    unmerge_lora(model)
    torch.testing.assert_close(model.head.base.weight, w_head, rtol=0, atol=1e-6)
    out = unload_lora(model)
    assert out is model and not lora_layers(model)
    assert type(model.head) is nn.Linear and type(model.layers[0].q_proj) is nn.Linear
    torch.testing.assert_close(model(x), y, rtol=0, atol=1e-5)


def test_lora_state_dict(model: Tiny) -> None:
    inject_lora(model, AdapterConfig(r=3, target_modules=["v_proj"]))
    sd = lora_state_dict(model)
    assert {k: tuple(v.shape) for k, v in sd.items()} == {
        f"layers.{i}.v_proj.lora_{ab}.weight": ((3, 8) if ab == "A" else (8, 3))
        for i in (0, 1) for ab in "AB"}
    assert not any(v.requires_grad for v in sd.values())


@pytest.mark.parametrize("bias", ["none", "all", "lora_only"])
def test_counts_equal_peft(model: Tiny, bias: str, capsys: pytest.CaptureFixture) -> None:
    from peft import LoraConfig, get_peft_model

    twin = get_peft_model(copy.deepcopy(model),
                          LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "mlp.0"],
                                     bias=bias))
    inject_lora(model, AdapterConfig(r=2, lora_alpha=4, target_modules=["q_proj", "mlp.0"],
                                     bias=bias))
    count = count_parameters(model)
    assert (count.trainable, count.total) == twin.get_nb_trainable_parameters()
    assert count.percent == pytest.approx(100 * count.trainable / count.total)
    twin.print_trainable_parameters()
    assert format_parameter_count(count) == capsys.readouterr().out.strip()

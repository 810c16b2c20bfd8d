"""Trainable tokens (PEFT's ``trainable_token_indices``) and ``ensure_weight_tying``, PEFT 0.21
the oracle: files both ways with PEFT's keys, equal logits (tolerance scaled to their size),
merged equals unmerged, unmerge restores, unload; only the listed rows train.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from torch import nn  # noqa: E402

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

from peft_parity import max_diff, tol, train_like  # noqa: E402

from loralab.errors import LoralabError  # noqa: E402
from loralab.lora import (  # noqa: E402
    AdapterConfig,
    inject_lora,
    load_adapter,
    lora_layers,
    merge_lora,
    save_adapter,
    unload,
    unload_lora,
    unmerge_lora,
)
from loralab.lora.tied import TiedLoRAHead  # noqa: E402
from loralab.lora.tokens import TrainableTokens, token_wrappers  # noqa: E402

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore::UserWarning")]
IDS = torch.tensor([[1, 60, 61, 5, 62, 3]])


def llama(tie: bool = True) -> nn.Module:
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48,
                                   num_hidden_layers=1, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=32,
                                   tie_word_embeddings=tie)
    return transformers.LlamaForCausalLM(cfg).eval()


def logits(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


def keys(folder: Path) -> list[str]:
    return sorted(load_file(folder / "adapter_model.safetensors"))


CASES = [
    ("tokens list, tied head", True, {"trainable_token_indices": [60, 61]}),
    ("tokens list, untied", False, {"trainable_token_indices": [60, 61]}),
    ("tokens dict + ensure_weight_tying", True,
     {"trainable_token_indices": {"embed_tokens": [60, 61, 62]}, "ensure_weight_tying": True}),
    ("tokens on embedding and head, untied", False,
     {"trainable_token_indices": {"embed_tokens": [60, 61], "lm_head": [60, 62]}}),
    ("tokens + modules_to_save", True,
     {"trainable_token_indices": [61], "modules_to_save": ["o_proj"]}),
    ("LoRA on embed_tokens + ensure_weight_tying", True,
     {"target_modules": ["embed_tokens", "q_proj"], "ensure_weight_tying": True}),
    ("LoRA on lm_head + ensure_weight_tying", True,
     {"target_modules": ["lm_head", "q_proj"], "ensure_weight_tying": True}),
    ("modules_to_save embed_tokens + ensure_weight_tying", True,
     {"modules_to_save": ["embed_tokens"], "ensure_weight_tying": True}),
]


def _fields(extra: dict) -> dict:
    """A fresh copy: PEFT's LoraConfig edits its lists (modules_to_save) in place."""
    return {"r": 2, "target_modules": ["q_proj"], **copy.deepcopy(extra)}


@pytest.mark.parametrize(("name", "tie", "extra"), CASES, ids=[c[0] for c in CASES])
def test_both_directions_merge_unmerge_unload(name, tie, extra, tmp_path: Path) -> None:
    theirs = peft.get_peft_model(llama(tie), peft.LoraConfig(**_fields(extra)))
    train_like(theirs)
    theirs.save_pretrained(tmp_path / "peft")
    ours = llama(tie)
    load_adapter(ours, tmp_path / "peft")
    y = logits(theirs)
    assert max_diff(logits(ours), y) <= tol(y)
    mine = llama(tie)
    inject_lora(mine, AdapterConfig(**_fields(extra)))
    train_like(mine, seed=2)
    save_adapter(mine, tmp_path / "ours")
    assert keys(tmp_path / "ours") == keys(tmp_path / "peft")      # PEFT's key set
    back = peft.PeftModel.from_pretrained(llama(tie), tmp_path / "ours").eval()
    y = logits(mine)
    assert max_diff(logits(back), y) <= tol(y)
    assert max_diff(y, logits(llama(tie))) > 1e-3
    before = {k: v.clone() for k, v in mine.state_dict().items()}
    merge_lora(mine)
    assert max_diff(logits(mine), y) <= tol(y)
    unmerge_lora(mine)
    assert all(max_diff(v, before[k]) <= 1e-5 for k, v in mine.state_dict().items())
    merged = unload_lora(mine)
    assert not lora_layers(merged) and not token_wrappers(merged)
    assert max_diff(logits(merged), y) <= tol(y)


def test_only_the_listed_rows_train_and_the_tied_head_follows() -> None:
    model = llama(True)
    inject_lora(model, AdapterConfig(r=2, target_modules=["q_proj"],
                                     trainable_token_indices=[60, 61]))
    emb, head = model.model.embed_tokens, model.lm_head
    assert isinstance(emb, TrainableTokens) and isinstance(head, TrainableTokens)
    assert head.tied_to is emb and not head.trainable()
    delta = emb.trainable_tokens_delta["default"]
    assert delta.shape == (2, 32) and delta.requires_grad and not emb.base.weight.requires_grad
    torch.testing.assert_close(delta, emb.base.weight[[60, 61]])     # starts as the rows
    model(input_ids=IDS).logits.sum().backward()
    assert emb.base.weight.grad is None and delta.grad is not None
    with torch.no_grad():
        delta.add_(1.0)
    e = emb.weight_with(["default"])
    assert torch.equal(e[[60, 61]], delta) and torch.equal(e[:60], emb.base.weight[:60])
    h = torch.randn(1, 32)
    torch.testing.assert_close(head(h), h @ e.t())                    # the head reads the same


def test_tokens_refusals_name_the_field(tmp_path: Path) -> None:
    cases = [
        ({"trainable_token_indices": [70]}, "trainable_token_indices 70 .* out of range"),
        ({"trainable_token_indices": {"nope": [1]}}, "names module 'nope'"),
        ({"trainable_token_indices": [1], "modules_to_save": ["embed_tokens"]},
         "both in modules_to_save and in trainable_token_indices"),
        ({"trainable_token_indices": {"embed_tokens": [1], "lm_head": [2]},
          "ensure_weight_tying": True}, "cannot ensure weight tying"),
        ({"trainable_token_indices": [-1]}, r"trainable_token_indices=\[-1\] is not allowed"),
    ]
    for extra, match in cases:
        model = llama(True)
        with pytest.raises(LoralabError, match=match):
            inject_lora(model, AdapterConfig(**_fields(extra)))
        assert not lora_layers(model) and not token_wrappers(model)


def test_different_rows_on_one_tied_weight_are_not_merged() -> None:
    model = llama(True)
    inject_lora(model, AdapterConfig(**_fields({"trainable_token_indices": {
        "embed_tokens": [60, 61], "lm_head": [60, 62]}})))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(LoralabError, match="different indices on one shared"):
        merge_lora(model)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    unload(model)
    assert model.lm_head.weight is model.model.embed_tokens.weight


def test_tied_lora_head_reads_the_embedding_factors() -> None:
    model = llama(True)
    inject_lora(model, AdapterConfig(r=2, target_modules=["embed_tokens"],
                                     ensure_weight_tying=True))
    train_like(model)
    head, emb = model.lm_head, model.model.embed_tokens
    assert isinstance(head, TiedLoRAHead) and head.source is emb
    table = emb.effective_weight().t()                                 # (V, d) = E + ΔE
    h = torch.randn(3, 32)
    torch.testing.assert_close(head(h), h @ table.t(), rtol=1e-5, atol=1e-4)
    unload_lora(model)
    assert model.lm_head.weight is model.model.embed_tokens.weight     # still tied


def test_disable_adapters_gives_the_base_rows_even_when_merged() -> None:
    from loralab.lora import disable_adapters

    model = llama(True)
    base = logits(model)
    inject_lora(model, AdapterConfig(**_fields({"trainable_token_indices": [60, 61]})))
    train_like(model)
    y = logits(model)
    for merge in (False, True):
        if merge:
            merge_lora(model)
        with disable_adapters(model):
            assert max_diff(logits(model), base) <= tol(base)
        assert max_diff(logits(model), y) <= tol(y)


@pytest.mark.parametrize(("extra", "extra2"), [
    ({"trainable_token_indices": [60, 61]}, {"trainable_token_indices": [62]}),
    ({"target_modules": ["embed_tokens", "q_proj"], "ensure_weight_tying": True},
     {"target_modules": ["embed_tokens", "q_proj"], "ensure_weight_tying": True}),
], ids=["tokens", "tied LoRA"])
def test_two_named_adapters_from_peft(extra, extra2, tmp_path: Path) -> None:
    from loralab.lora import set_adapter

    theirs = peft.get_peft_model(llama(True), peft.LoraConfig(**_fields(extra)))
    theirs.add_adapter("other", peft.LoraConfig(**_fields(extra2)))
    train_like(theirs)
    theirs.save_pretrained(tmp_path)
    ours = llama(True)
    load_adapter(ours, tmp_path)
    load_adapter(ours, tmp_path / "other", adapter_name="other")
    seen = []
    for name in ("default", "other"):
        theirs.set_adapter(name)
        set_adapter(ours, name)
        y = logits(theirs)
        assert max_diff(logits(ours), y) <= tol(y)
        seen.append(y)
    assert max_diff(*seen) > 1e-3                                      # two different adapters


def test_mixed_adapter_batches_are_refused_with_tokens_or_tied_heads() -> None:
    from loralab.lora.mixed import mixed_adapter_batch

    for extra, what in [({"trainable_token_indices": [60]}, "trainable_token_indices"),
                        ({"target_modules": ["embed_tokens"], "ensure_weight_tying": True},
                         "ensure_weight_tying")]:
        model = llama(True)
        inject_lora(model, AdapterConfig(**_fields(extra)))
        with pytest.raises(LoralabError, match=f"adapter_names is not allowed .*{what}"):
            with mixed_adapter_batch(model, ["default"]):
                pass

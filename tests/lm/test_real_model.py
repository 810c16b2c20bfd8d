"""The real pretrained model in CI: SmolLM2-135M loads, generates, trains only A and B, and its
adapters go to PEFT and back with the same logits. Short sequences, a step or two: seconds."""

from __future__ import annotations

import copy

import pytest
import torch

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
pytest.importorskip("gguf")

from loralab.lm.hf_model import HFCausalLM, load_causal_lm, module_names  # noqa: E402
from loralab.lora import (  # noqa: E402
    AdapterConfig,
    inject_lora,
    load_adapter,
    merge_lora,
    save_adapter,
    unmerge_lora,
)
from loralab.lora.state import lora_layers  # noqa: E402

pytestmark = pytest.mark.real_model
TEXT = "Low-rank adaptation trains two small matrices beside each frozen weight."


@pytest.fixture(scope="module")
def real(real_cache):
    torch.manual_seed(0)
    wrapper, tok = load_causal_lm("smollm2", cache_dir=real_cache)
    ids = torch.tensor([tok(TEXT, add_special_tokens=False)["input_ids"][:16]])
    return wrapper, tok, ids


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits.float()


def test_real_model_shape_and_greedy_answer(real):
    wrapper, tok, _ = real
    hf = wrapper.hf
    assert type(hf).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in hf.parameters()) == 134_515_008
    assert hf.config.num_hidden_layers == 30 and hf.config.hidden_size == 576
    assert hf.get_input_embeddings().weight is hf.get_output_embeddings().weight   # tied
    assert module_names(wrapper) == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                     "up_proj", "down_proj"]
    prompt = tok.apply_chat_template([{"role": "user", "content":
                                       "What is the capital of France?"}],
                                     add_generation_prompt=True, return_tensors="pt")
    prompt = prompt if torch.is_tensor(prompt) else prompt["input_ids"]
    out = hf.generate(prompt, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out[0, prompt.shape[1]:])


def test_one_lora_step_moves_only_a_and_b(real):
    wrapper, _, ids = real
    model = HFCausalLM(copy.deepcopy(wrapper.hf))
    inject_lora(model.hf, AdapterConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                        init_lora_weights="gaussian"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n, p in model.named_parameters()
                             if p.requires_grad)
    opt = torch.optim.AdamW(trainable, lr=1e-3)
    logits = model(ids[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
    loss.backward()
    opt.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved == {n for n, p in model.named_parameters() if p.requires_grad}
    assert len(moved) == 2 * 2 * 30                                   # A and B, q and v, 30


def _trained_adapter(hf, r=4):
    inject_lora(hf, AdapterConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj",
                                                                         "down_proj"]))
    g = torch.Generator().manual_seed(1)
    for layer in lora_layers(hf).values():
        for name in layer.active_adapters:
            b = layer.lora_B[name].weight
            b.data = torch.randn(b.shape, generator=g) * 0.02   # a trained-looking B ≠ 0
    return hf


def test_loralab_adapter_loads_into_peft_with_equal_logits(real, tmp_path):
    wrapper, _, ids = real
    ours = _trained_adapter(copy.deepcopy(wrapper.hf))
    save_adapter(ours, tmp_path / "ad")
    theirs = peft.PeftModel.from_pretrained(copy.deepcopy(wrapper.hf), tmp_path / "ad").eval()
    a, b = _logits(ours, ids), _logits(theirs, ids)
    base = _logits(wrapper.hf, ids)
    assert (a - base).abs().max() > 1e-2                   # the adapter changes the logits
    assert (a - b).abs().max() <= 1e-4 * base.abs().max()


def test_peft_adapter_loads_into_loralab_with_equal_logits(real, tmp_path):
    wrapper, _, ids = real
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["k_proj", "o_proj", "up_proj"],
                          init_lora_weights=False)               # B random: a real update
    theirs = peft.get_peft_model(copy.deepcopy(wrapper.hf), cfg).eval()
    theirs.save_pretrained(tmp_path / "ad")
    ours = copy.deepcopy(wrapper.hf)
    load_adapter(ours, tmp_path / "ad")
    a, b = _logits(ours, ids), _logits(theirs, ids)
    base = _logits(wrapper.hf, ids)
    assert (b - base).abs().max() > 1e-2
    assert (a - b).abs().max() <= 1e-4 * base.abs().max()


def test_merge_equals_unmerged_and_unmerge_restores(real):
    wrapper, _, ids = real
    model = _trained_adapter(copy.deepcopy(wrapper.hf))
    w0 = model.model.layers[3].self_attn.q_proj.base.weight.detach().clone()
    unmerged = _logits(model, ids)
    merge_lora(model)
    merged = _logits(model, ids)
    assert (merged - unmerged).abs().max() <= 1e-4 * unmerged.abs().max()
    unmerge_lora(model)
    w = model.model.layers[3].self_attn.q_proj.base.weight
    assert (w - w0).abs().max() <= 1e-6 * w0.abs().max()

"""LoRA on real transformers models, PEFT 0.21 as the oracle, both directions.

Tiny random-init GPT-2 (Conv1D, tied embedding), Llama and BERT-for-sequence-classification
are built from configs (no download). For each config field and layer type: an adapter PEFT
made loads into loralab, one loralab saved loads into PEFT, logits equal to 1e-5 (fp32);
merged weights equal PEFT's ``merge_and_unload``.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

from loralab.errors import LoralabError  # noqa: E402
from loralab.lora import (  # noqa: E402
    AdapterConfig,
    LoRAConv,
    LoRAEmbedding,
    LoRALinear,
    TrainedCopy,
    inject_lora,
    load_adapter,
    lora_layers,
    save_adapter,
    unload,
    unload_lora,
)

TOL = 1e-5
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gpt2() -> nn.Module:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=2, n_positions=32,
                                  bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg).eval()


def llama() -> nn.Module:
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=32)
    return transformers.LlamaForCausalLM(cfg).eval()


def bert_cls() -> nn.Module:
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=48,
                                  max_position_embeddings=32, num_labels=3)
    return transformers.BertForSequenceClassification(cfg).eval()


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(3, 6, 3, padding=1)
        self.c2 = nn.Conv2d(6, 8, 3, padding=1)
        self.p = nn.Conv2d(8, 4, 1)
        self.emb = nn.Embedding(10, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.c1(self.emb(ids).transpose(1, 2))            # (N, 6, L)
        return self.p(self.c2(h.unsqueeze(2).expand(-1, -1, 4, -1)))


def conv_net() -> nn.Module:
    torch.manual_seed(0)
    return ConvNet().eval()


IDS = torch.randint(1, 64, (2, 12), generator=torch.Generator().manual_seed(3))
CONV_IDS = torch.randint(0, 10, (2, 7), generator=torch.Generator().manual_seed(3))


def logits(model: nn.Module, make) -> torch.Tensor:
    with torch.no_grad():
        if make is conv_net:
            return model(CONV_IDS)
        return model(input_ids=IDS).logits


def train_like(model: nn.Module, seed: int = 1) -> None:
    """Change every trainable parameter, as training would (B ≠ 0 afterwards)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen).to(p.dtype) * 0.2)


# (name, model maker, LoraConfig fields): each case runs in both directions.
CASES = [
    ("gpt2 Conv1D c_attn+c_proj (fan_in_fan_out)", gpt2,
     {"target_modules": ["c_attn", "c_proj"], "fan_in_fan_out": True}),
    ("gpt2 Embedding wte", gpt2, {"target_modules": ["wte"]}),
    ("gpt2 all-linear (head left out)", gpt2, {"target_modules": "all-linear"}),
    ("llama q,v + rsLoRA", llama, {"target_modules": ["q_proj", "v_proj"], "use_rslora": True}),
    ("llama all-linear", llama, {"target_modules": "all-linear"}),
    ("llama rank_pattern+alpha_pattern", llama,
     {"target_modules": ["q_proj", "v_proj", "down_proj"], "rank_pattern": {"down_proj": 2},
      "alpha_pattern": {"v_proj": 32}}),
    ("llama layers_to_transform=0", llama,
     {"target_modules": ["q_proj", "v_proj"], "layers_to_transform": 0,
      "layers_pattern": "layers"}),
    ("llama layers_to_transform=[1]", llama,
     {"target_modules": ["q_proj", "o_proj"], "layers_to_transform": [1]}),
    ("llama exclude_modules", llama,
     {"target_modules": ["q_proj", "v_proj"],
      "exclude_modules": ["model.layers.0.self_attn.q_proj"]}),
    ("bert lora_bias", bert_cls, {"target_modules": ["query", "value"], "lora_bias": True}),
    ("llama modules_to_save=[lm_head]", llama,
     {"target_modules": ["q_proj"], "modules_to_save": ["lm_head"]}),
    ("bert SEQ_CLS head + bias=all", bert_cls,
     {"target_modules": ["query", "value"], "task_type": "SEQ_CLS", "bias": "all"}),
    ("bert TOKEN_CLS-style modules_to_save", bert_cls,
     {"target_modules": ["query"], "modules_to_save": ["classifier"]}),
    ("Conv1d + Conv2d + Embedding", conv_net, {"target_modules": ["c1", "c2", "p", "emb"]}),
]
IDS_OF = [c[0] for c in CASES]


def _peft_model(base: nn.Module, fields: dict) -> nn.Module:
    cfg = peft.LoraConfig(r=4, lora_alpha=8, **fields)
    return peft.get_peft_model(base, cfg)


@pytest.mark.parametrize(("name", "make", "fields"), CASES, ids=IDS_OF)
def test_peft_adapter_loads_into_loralab(name, make, fields, tmp_path: Path) -> None:
    theirs = _peft_model(make(), copy.deepcopy(fields))
    train_like(theirs)
    theirs.save_pretrained(tmp_path)
    ours = make()
    load_adapter(ours, tmp_path)
    diff = float((logits(ours, make) - logits(theirs, make)).abs().max())
    assert diff <= TOL
    assert not torch.equal(logits(ours, make), logits(make(), make))   # the adapter acts


@pytest.mark.parametrize(("name", "make", "fields"), CASES, ids=IDS_OF)
def test_loralab_adapter_loads_into_peft(name, make, fields, tmp_path: Path) -> None:
    ours = make()
    inject_lora(ours, AdapterConfig(r=4, lora_alpha=8, **copy.deepcopy(fields)))
    train_like(ours)
    save_adapter(ours, tmp_path)
    theirs = peft.PeftModel.from_pretrained(make(), tmp_path).eval()
    diff = float((logits(ours, make) - logits(theirs, make)).abs().max())
    assert diff <= TOL
    assert not torch.equal(logits(ours, make), logits(make(), make))


@pytest.mark.parametrize(("name", "make", "fields"), CASES, ids=IDS_OF)
def test_merge_equals_peft_merge_and_unload(name, make, fields, tmp_path: Path) -> None:
    theirs = _peft_model(make(), copy.deepcopy(fields))
    train_like(theirs)
    theirs.save_pretrained(tmp_path)
    ours = make()
    load_adapter(ours, tmp_path)
    if fields.get("target_modules") == ["wte"]:     # tied to lm_head: PEFT would change both
        with pytest.raises(LoralabError, match="shared with 'lm_head.weight'"):
            unload_lora(ours)
        return
    merged_theirs = theirs.merge_and_unload()
    merged_ours = unload_lora(ours)
    assert not lora_layers(merged_ours)
    sd_t, sd_o = merged_theirs.state_dict(), merged_ours.state_dict()
    assert sd_t.keys() == sd_o.keys()
    worst = max(float((sd_t[k].float() - sd_o[k].float()).abs().max()) for k in sd_t)
    assert worst <= TOL
    assert float((logits(merged_ours, make) - logits(merged_theirs, make)).abs().max()) <= TOL


def test_layer_types_are_picked_per_module() -> None:
    model = conv_net()
    inject_lora(model, AdapterConfig(r=2, target_modules=["c1", "c2", "emb"]))
    assert isinstance(model.c1, LoRAConv) and isinstance(model.c2, LoRAConv)
    assert isinstance(model.emb, LoRAEmbedding)
    g = gpt2()
    with pytest.warns(UserWarning, match="using True"):
        inject_lora(g, AdapterConfig(r=2, target_modules=["c_attn"]))
    layer = g.transformer.h[0].attn.c_attn
    assert isinstance(layer, LoRALinear) and layer.fan_in_fan_out
    # Conv1D stores W as (d_in, d_out); ΔW is (d_out, d_in) like every layer's (issue 28)
    assert layer.delta_weight().shape == layer.base.weight.t().shape   # (d_out, d_in)


def test_all_linear_leaves_the_output_head_out() -> None:
    g = gpt2()
    names = inject_lora(g, AdapterConfig(r=2, target_modules="all-linear"))
    assert "lm_head" not in names and any(n.endswith("c_attn") for n in names)
    b = bert_cls()
    names = inject_lora(b, AdapterConfig(r=2, target_modules="all-linear", task_type="SEQ_CLS"))
    assert "classifier" not in names and isinstance(b.classifier, TrainedCopy)


def test_peft_config_object_and_dict_are_accepted() -> None:
    a, b = llama(), llama()
    inject_lora(a, peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"]))
    inject_lora(b, peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"]).to_dict())
    assert sorted(lora_layers(a)) == sorted(lora_layers(b)) != []
    with pytest.raises(LoralabError, match="layer_replication=.* is not supported"):
        inject_lora(llama(), peft.LoraConfig(target_modules=["q_proj"],
                                             layer_replication=[[0, 1]]))


def test_layers_to_transform_int_means_that_layer() -> None:
    model = llama()
    names = inject_lora(model, AdapterConfig(r=2, target_modules=["q_proj"],
                                             layers_to_transform=0))
    assert names == ["model.layers.0.self_attn.q_proj"]


def test_classification_adapter_round_trips_with_its_head(tmp_path: Path) -> None:
    model = bert_cls()
    inject_lora(model, AdapterConfig(r=4, target_modules=["query", "value"], task_type="SEQ_CLS"))
    assert model.classifier.module.weight.requires_grad
    train_like(model)
    save_adapter(model, tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert "classifier" in saved["modules_to_save"] and saved["task_type"] == "SEQ_CLS"
    fresh = bert_cls()
    load_adapter(fresh, tmp_path)
    assert float((logits(fresh, bert_cls) - logits(model, bert_cls)).abs().max()) <= TOL


def test_head_unfrozen_by_hand_is_saved(tmp_path: Path) -> None:
    model = bert_cls()
    inject_lora(model, AdapterConfig(r=4, target_modules=["query"]))
    model.classifier.requires_grad_(True)             # what users do before PEFT had heads
    train_like(model)
    save_adapter(model, tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["modules_to_save"] == [
        "classifier"]
    for fresh in (bert_cls(), None):
        if fresh is None:
            fresh = peft.PeftModel.from_pretrained(bert_cls(), tmp_path).eval()
        else:
            load_adapter(fresh, tmp_path)
        assert float((logits(fresh, bert_cls) - logits(model, bert_cls)).abs().max()) <= TOL


def _unchanged_fraction(autocast: bool) -> float:
    model = llama().to(torch.bfloat16).train()
    inject_lora(model, AdapterConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                     init_lora_weights="gaussian"),
                generator=torch.Generator().manual_seed(0), autocast_adapter_dtype=autocast)
    a0 = {n: m.lora_A["default"].weight.detach().clone() for n, m in lora_layers(model).items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    for step in range(3):
        ids = torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(step))
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    same = sum(int((m.factors()[0] == a0[n]).sum()) for n, m in lora_layers(model).items())
    return same / sum(t.numel() for t in a0.values())


def test_bf16_base_trains_a_float32_adapter() -> None:
    model = llama().to(torch.bfloat16)
    inject_lora(model, AdapterConfig(r=4, target_modules=["q_proj"]))
    layer = model.model.layers[0].self_attn.q_proj
    assert layer.factors()[0].dtype == torch.float32
    assert layer.base.weight.dtype == torch.bfloat16
    out = model(input_ids=IDS).logits
    assert out.dtype == torch.bfloat16
    assert _unchanged_fraction(True) == 0.0
    assert _unchanged_fraction(False) > 0.5       # why PEFT (and loralab) keep fp32 factors


def test_save_pretrained_writes_the_adapter_and_from_pretrained_rebuilds(tmp_path: Path) -> None:
    base = llama()
    base.save_pretrained(tmp_path / "base")
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base").eval()
    inject_lora(model, AdapterConfig(r=4, target_modules=["q_proj", "v_proj"]))
    train_like(model)
    model.save_pretrained(tmp_path / "tuned")
    files = sorted(p.name for p in (tmp_path / "tuned").iterdir())
    assert files == ["adapter_config.json", "adapter_model.safetensors"]
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "tuned").eval()
    assert float((logits(again, llama) - logits(model, llama)).abs().max()) <= TOL
    unload_lora(model)
    assert "save_pretrained" not in vars(model)


def test_unload_removes_lora_without_merging() -> None:
    model = llama()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inject_lora(model, AdapterConfig(r=4, target_modules=["q_proj"]))
    train_like(model)
    unload(model)
    assert not lora_layers(model)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_generate_gives_peft_tokens(tmp_path: Path) -> None:
    ours = gpt2()
    inject_lora(ours, AdapterConfig(r=4, target_modules=["c_attn"], fan_in_fan_out=True))
    train_like(ours)
    save_adapter(ours, tmp_path)
    theirs = peft.PeftModel.from_pretrained(gpt2(), tmp_path).eval()
    kw = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": 0}
    assert torch.equal(ours.generate(input_ids=IDS[:1, :4], **kw),
                       theirs.generate(input_ids=IDS[:1, :4], **kw))


def test_bad_fields_are_refused_by_name() -> None:
    for fields, match in [({"lora_bias": True, "target_modules": ["wte"]}, "lora_bias"),
                          ({"init_lora_weights": "pissa", "target_modules": ["wte"]}, "pissa"),
                          ({"target_modules": ["ln_f"]}, "LayerNorm")]:
        model = gpt2()
        snap = {k: v.clone() for k, v in model.state_dict().items()}
        with pytest.raises(LoralabError, match=match):
            inject_lora(model, AdapterConfig(r=2, **fields))
        assert all(torch.equal(snap[k], v) for k, v in model.state_dict().items())
        assert not lora_layers(model)

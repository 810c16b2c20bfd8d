"""``target_parameters``: LoRA on bare 2-D/3-D parameters, PEFT 0.21's ``ParamWrapper`` the oracle.

Tiny random-init mixture-of-experts models from transformers configs (no download): Mixtral,
Qwen3-MoE (experts ``(E, d_out, d_in)``), GPT-OSS (``is_transposed``: ``(E, d_in, d_out)``)
and Llama 4 (``(E, d_in, d_out)`` without the flag: PEFT reads it as ``(E, d_out, d_in)``, and
so does loralab). Files both ways with equal logits, merge, unmerge, unload; a numpy oracle
for ``ΔW``; the experts stay untrained under ``target_modules`` alone.
"""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from parity import check  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

peft = pytest.importorskip("peft")
T = pytest.importorskip("transformers")

from loralab.errors import LoralabError  # noqa: E402
from loralab.lora import (  # noqa: E402
    AdapterConfig,
    LoRAParameter,
    add_adapter,
    add_weighted_adapter,
    inject_lora,
    load_adapter,
    lora_layers,
    merge_lora,
    mixed_adapter_batch,
    save_adapter,
    unload,
    unmerge_lora,
)

COMMON = dict(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
              num_key_value_heads=1, max_position_embeddings=32, head_dim=8)
EXPERTS = {"llama4": ["feed_forward.experts.gate_up_proj", "feed_forward.experts.down_proj"]}


def tiny_moe(kind: str) -> nn.Module:
    """A two-layer, four-expert causal LM of ``kind``, seeded, in eval mode."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "mixtral":
            cfg = T.MixtralConfig(intermediate_size=24, num_local_experts=4,
                                  num_experts_per_tok=2, **COMMON)
            return T.MixtralForCausalLM(cfg).eval()
        if kind == "qwen3_moe":
            cfg = T.Qwen3MoeConfig(moe_intermediate_size=24, intermediate_size=32,
                                   num_experts=4, num_experts_per_tok=2, **COMMON)
            return T.Qwen3MoeForCausalLM(cfg).eval()
        if kind == "gpt_oss":
            cfg = T.GptOssConfig(intermediate_size=24, num_local_experts=4,
                                 num_experts_per_tok=2, layer_types=["full_attention"] * 2,
                                 **COMMON)
            return T.GptOssForCausalLM(cfg).eval()
        cfg = T.Llama4TextConfig(intermediate_size=24, intermediate_size_mlp=32,
                                 num_local_experts=4, num_experts_per_tok=1,
                                 interleave_moe_layer_step=1, **COMMON)
        return T.Llama4ForCausalLM(cfg).eval()


def experts(kind: str) -> list[str]:
    return EXPERTS.get(kind, ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"])


IDS = torch.tensor([[1, 5, 9, 33, 2, 60, 7], [4, 4, 18, 51, 12, 0, 3]])
KINDS = ["mixtral", "qwen3_moe", "gpt_oss", "llama4"]


def logits(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits


@pytest.mark.parametrize("kind", KINDS)
def test_peft_adapter_loads_into_loralab_and_back(kind, tmp_path):
    base = tiny_moe(kind)
    state = {k: v.clone() for k, v in base.state_dict().items()}
    config = peft.LoraConfig(r=2, lora_alpha=5, target_modules=["q_proj"],
                             target_parameters=experts(kind), rank_pattern={"down_proj": 3},
                             init_lora_weights=False)
    pm = peft.get_peft_model(base, config).eval()
    want = logits(pm)
    pm.save_pretrained(tmp_path / "peft")
    ours = tiny_moe(kind)
    paths = load_adapter(ours, tmp_path / "peft")
    assert sum(isinstance(ours.get_submodule(p), LoRAParameter) for p in paths) == 4
    check(f"target_parameters {kind}", "PEFT -> loralab", logits(ours), want)
    save_adapter(ours, tmp_path / "ours")
    back = peft.PeftModel.from_pretrained(tiny_moe(kind), tmp_path / "ours").eval()
    check(f"target_parameters {kind}", "loralab -> PEFT", logits(back), want)
    unmerged = logits(ours)
    merge_lora(ours)
    check(f"target_parameters {kind}", "merged vs unmerged", logits(ours), unmerged)
    unmerge_lora(ours)
    restored = torch.cat([(m.param() - state[f"{m.module_key}"]).flatten()
                          for m in _param_layers(ours)])
    check(f"target_parameters {kind}", "unmerge restores W0", restored,
          torch.zeros_like(restored))
    unload(ours)
    assert not lora_layers(ours)
    assert all(torch.allclose(v, ours.state_dict()[k], atol=1e-6) for k, v in state.items())


def _param_layers(model: nn.Module) -> list[LoRAParameter]:
    """The LoRAParameter layers, each tagged with the state-dict key of its parameter."""
    out = []
    for path, m in lora_layers(model).items():
        if isinstance(m, LoRAParameter):
            module = path
            while module.endswith(".base"):
                module = module[:-5]
            m.module_key = f"{module}.{m.parameter_name}"
            out.append(m)
    return out


def test_delta_matches_a_numpy_oracle_and_peft_interleaving():
    model = tiny_moe("mixtral")
    inject_lora(model, AdapterConfig(r=3, lora_alpha=6, target_modules=[],
                                     target_parameters=["experts.gate_up_proj"],
                                     init_lora_weights=False))
    layer = model.model.layers[0].mlp.experts
    a, b = (t.detach().numpy().copy() for t in layer.factors("default"))
    e, r = 4, 3
    want = np.stack([b[:, [k * e + i for k in range(r)]] @ a[i * r:(i + 1) * r]
                     for i in range(e)]) * 2.0                     # (E, d_out, d_in)
    np.testing.assert_allclose(layer.delta_weight().detach().numpy(), want, rtol=1e-5, atol=1e-6)
    assert layer.delta_weight().shape == layer.param().shape == (4, 48, 16)


class Holder(nn.Module):
    """A bare 2-D parameter read with ``F.linear`` (as a fused projection would be)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(5, 7))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.w)


def test_two_d_parameter_forward_is_linear_with_w0_plus_delta():
    torch.manual_seed(0)
    model = nn.Sequential(Holder())
    w0 = model[0].w.detach().clone()
    inject_lora(model, AdapterConfig(r=2, lora_alpha=4, target_modules=[],
                                     target_parameters=["0.w"], init_lora_weights=False))
    layer = model[0]
    a, b = (t.detach() for t in layer.factors())
    x = torch.randn(3, 7)
    torch.testing.assert_close(model(x), x @ (w0 + 2.0 * b @ a).T)
    assert torch.equal(layer.param(), w0)            # the forward left W0 untouched
    with pytest.raises(LoralabError, match="target_parameters"):
        with mixed_adapter_batch(model.eval(), ["default"] * 3):
            pass
    merge_lora(model)
    torch.testing.assert_close(layer.param().detach(), w0 + 2.0 * b @ a)


def test_target_modules_alone_leaves_experts_untrained_target_parameters_trains_them():
    def expert_weights(model):
        return [layer.effective_weight().clone() if isinstance(layer, LoRAParameter)
                else layer.detach().clone() for layer in
                (model.model.layers[0].mlp.experts if isinstance(
                    model.model.layers[0].mlp.experts, LoRAParameter)
                 else model.model.layers[0].mlp.experts.gate_up_proj,)]

    for targets, trains in ((None, False), (["mlp.experts.gate_up_proj"], True)):
        model = tiny_moe("mixtral").train()
        inject_lora(model, AdapterConfig(target_modules="all-linear",
                                         target_parameters=targets))
        before = expert_weights(model)
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
        for _ in range(3):
            loss = model(IDS, labels=IDS).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
        moved = float((expert_weights(model)[0] - before[0]).abs().max())
        assert (moved > 1e-4) is trains, (targets, moved)


@pytest.mark.parametrize("kwargs, field", [
    ({"lora_dropout": 0.1}, "lora_dropout"), ({"use_dora": True}, "use_dora"),
    ({"lora_bias": True}, "lora_bias"), ({"init_lora_weights": "pissa"}, "init_lora_weights"),
])
def test_config_refuses_what_paramwrapper_refuses(kwargs, field):
    with pytest.raises(LoralabError, match=field):
        AdapterConfig(target_modules=[], target_parameters=["experts.down_proj"], **kwargs)


def test_refusals_name_the_value():
    with pytest.raises(LoralabError, match="target_parameters"):
        AdapterConfig(target_parameters="experts.down_proj")
    model = tiny_moe("mixtral")
    with pytest.raises(LoralabError, match="matches no parameter"):
        inject_lora(model, AdapterConfig(target_modules=[], target_parameters=["nope"]))
    with pytest.raises(LoralabError, match="1-D"):
        inject_lora(model, AdapterConfig(target_modules=[],
                                         target_parameters=["input_layernorm.weight"]))
    assert not lora_layers(model)
    inject_lora(model, AdapterConfig(target_modules=[],
                                     target_parameters=["experts.down_proj"]))
    with pytest.raises(LoralabError, match="same parameters"):
        add_adapter(model, "other", AdapterConfig(target_modules=[],
                                                  target_parameters=["experts.gate_up_proj"]))
    add_adapter(model, "second", AdapterConfig(target_modules=[],
                                               target_parameters=["experts.down_proj"]))
    with pytest.raises(LoralabError, match="target_parameters"):
        add_weighted_adapter(model, ["default", "second"], [1.0, 1.0], "sum", "cat")


def test_second_adapter_shares_the_wrapper_and_round_trips_with_peft(tmp_path):
    config = dict(r=2, target_modules=[], init_lora_weights=False,
                  target_parameters=["mlp.experts.gate_up_proj", "mlp.experts.down_proj"])
    pm = peft.get_peft_model(tiny_moe("qwen3_moe"), peft.LoraConfig(**config))
    pm.add_adapter("two", peft.LoraConfig(**{**config, "r": 3}))
    pm.set_adapter("two")
    want = logits(pm.eval())
    pm.save_pretrained(tmp_path)
    ours = tiny_moe("qwen3_moe")
    load_adapter(ours, tmp_path)
    load_adapter(ours, tmp_path / "two", adapter_name="two")
    layer = ours.model.layers[0].mlp.experts
    assert layer.adapter_names == ["default", "two"]
    from loralab.lora import set_adapter
    set_adapter(ours, "two")
    check("target_parameters two adapters", "PEFT -> loralab", logits(ours), want)
    save_adapter(ours, tmp_path / "ours")                  # target_modules=[]: parameters only
    back = peft.PeftModel.from_pretrained(tiny_moe("qwen3_moe"), tmp_path / "ours")
    back.load_adapter(tmp_path / "ours" / "two", adapter_name="two")
    back.set_adapter("two")
    check("target_parameters two adapters", "loralab -> PEFT", logits(back.eval()), want)

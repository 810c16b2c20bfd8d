"""Named adapters, DoRA, LoRA+ and the inits, PEFT 0.21 as the oracle (tiny Llama, GPT-2)."""

from __future__ import annotations

import copy
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

peft = pytest.importorskip("peft")
pytest.importorskip("transformers")

from test_transformers import IDS, gpt2, llama, logits, train_like  # noqa: E402

from loralab.errors import LoralabError  # noqa: E402
from loralab.lora import (  # noqa: E402
    AdapterConfig,
    LoRALinear,
    add_adapter,
    add_weighted_adapter,
    delete_adapter,
    disable_adapters,
    inject_lora,
    load_adapter,
    lora_layers,
    merge_lora,
    save_adapter,
    set_adapter,
    unload_lora,
    unmerge_lora,
)

TOL = 1e-5
pytestmark = pytest.mark.usefixtures("one_torch_thread")
QV = {"target_modules": ["q_proj", "v_proj"]}


def two_adapters() -> tuple[nn.Module, nn.Module]:
    """The same two adapters in loralab and in PEFT (copied tensors): 'default' on q,v r=4,
    'other' on q,o r=2 with rsLoRA."""
    ours = llama()
    inject_lora(ours, AdapterConfig(r=4, lora_alpha=8, **QV))
    add_adapter(ours, "other", AdapterConfig(r=2, lora_alpha=4, use_rslora=True,
                                             target_modules=["q_proj", "o_proj"]))
    train_like(ours)
    set_adapter(ours, "other")
    train_like(ours, seed=2)
    theirs = peft.get_peft_model(llama(), peft.LoraConfig(r=4, lora_alpha=8, **QV))
    theirs.add_adapter("other", peft.LoraConfig(r=2, lora_alpha=4, use_rslora=True,
                                                target_modules=["q_proj", "o_proj"]))
    sd = {k.replace(".base.", ".base_layer."): v for k, v in ours.state_dict().items()}
    with torch.no_grad():
        for k, v in theirs.state_dict().items():
            key = k.removeprefix("base_model.model.")
            if "lora_" in key:
                v.copy_(sd[key])
    return ours, theirs.eval()


def test_set_adapter_switches_like_peft() -> None:
    ours, theirs = two_adapters()
    for name in ("default", "other"):
        set_adapter(ours, name)
        theirs.set_adapter(name)
        assert float((logits(ours, llama) - logits(theirs, llama)).abs().max()) <= TOL
    trainable = {n for n, p in ours.named_parameters() if p.requires_grad}
    assert trainable and all(".other." in n for n in trainable)      # only the active trains
    set_adapter(ours, ["default", "other"])                           # both: outputs add up
    theirs.base_model.set_adapter(["default", "other"])
    assert float((logits(ours, llama) - logits(theirs, llama)).abs().max()) <= TOL


def test_disable_adapters_is_exactly_the_base() -> None:
    ours, _ = two_adapters()
    base = logits(llama(), llama)
    with disable_adapters(ours):
        assert torch.equal(logits(ours, llama), base)                 # exactly
    merge_lora(ours)
    with disable_adapters(ours):                                      # unmerged: to rounding
        assert float((logits(ours, llama) - base).abs().max()) <= TOL
    assert float((logits(ours, llama) - base).abs().max()) > 1e-3
    assert all(m.merged for m in lora_layers(ours).values() if m.active_adapters)


def test_multi_adapter_folder_is_peft_layout(tmp_path: Path) -> None:
    ours, _ = two_adapters()
    save_adapter(ours, tmp_path)
    assert (tmp_path / "adapter_config.json").is_file()
    assert (tmp_path / "other" / "adapter_model.safetensors").is_file()
    theirs = peft.PeftModel.from_pretrained(llama(), tmp_path).eval()
    theirs.load_adapter(tmp_path / "other", adapter_name="other")
    fresh = llama()
    load_adapter(fresh, tmp_path)
    load_adapter(fresh, tmp_path / "other", adapter_name="other")
    for name in ("default", "other"):
        set_adapter(ours, name)
        set_adapter(fresh, name)
        theirs.set_adapter(name)
        assert float((logits(fresh, llama) - logits(ours, llama)).abs().max()) <= TOL
        assert float((logits(theirs, llama) - logits(ours, llama)).abs().max()) <= TOL


@pytest.mark.parametrize("combination", ["linear", "cat", "svd"])
def test_add_weighted_adapter_gives_peft_weights(combination: str) -> None:
    ours, theirs = two_adapters()
    if combination == "linear":                  # linear needs one rank: combine default twice
        adapters, weights = ["default", "default"], [0.7, 0.5]
    else:
        adapters, weights = ["default", "other"], [0.7, -0.4]
    add_weighted_adapter(ours, adapters, weights, "mix", combination_type=combination)
    theirs.add_weighted_adapter(adapters, weights, "mix", combination_type=combination)
    theirs_sd = {k.removeprefix("base_model.model."): v for k, v in theirs.state_dict().items()}
    n = 0
    for key, t in ours.state_dict().items():
        if ".mix." in key:
            other = theirs_sd[key.replace(".base.", ".base_layer.")]
            if combination == "svd":             # the SVD's signs may differ: compare B A
                continue
            assert float((t - other).abs().max()) <= TOL, key
            n += 1
    for path, layer in lora_layers(ours).items():
        if "mix" in layer.r and combination == "svd":
            peft_layer = theirs.base_model.model.get_submodule(path)
            torch.testing.assert_close(layer.delta_weight("mix"),
                                       peft_layer.get_delta_weight("mix"), atol=1e-5, rtol=1e-4)
            n += 1
    assert n > 0
    set_adapter(ours, "mix")
    theirs.set_adapter("mix")
    assert float((logits(ours, llama) - logits(theirs, llama)).abs().max()) <= 1e-4


def test_cat_combination_is_exact() -> None:
    ours, _ = two_adapters()
    add_weighted_adapter(ours, ["default", "other"], [1.0, 1.0], "sum", combination_type="cat")
    for layer in lora_layers(ours).values():
        if "sum" in layer.r:
            want = sum(layer.delta_weight(a) for a in ("default", "other") if a in layer.r)
            torch.testing.assert_close(layer.delta_weight("sum"), want, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("make", [llama, gpt2], ids=["llama Linear", "gpt2 Conv1D"])
def test_dora_both_ways_and_merge(make, tmp_path: Path) -> None:
    targets = ["q_proj", "v_proj"] if make is llama else ["c_attn"]
    fields = {"target_modules": targets, "use_dora": True}
    if make is gpt2:
        fields["fan_in_fan_out"] = True
    theirs = peft.get_peft_model(make(), peft.LoraConfig(r=4, lora_alpha=8, **fields))
    train_like(theirs)
    theirs.save_pretrained(tmp_path / "p")
    ours = make()
    load_adapter(ours, tmp_path / "p")
    assert float((logits(ours, make) - logits(theirs, make)).abs().max()) <= TOL
    mine = make()
    inject_lora(mine, AdapterConfig(r=4, lora_alpha=8, **fields))
    train_like(mine)
    save_adapter(mine, tmp_path / "o")
    back = peft.PeftModel.from_pretrained(make(), tmp_path / "o").eval()
    assert float((logits(mine, make) - logits(back, make)).abs().max()) <= TOL
    before = logits(ours, make)
    merge_lora(ours)
    assert float((logits(ours, make) - before).abs().max()) <= TOL
    unmerge_lora(ours)
    assert float((logits(ours, make) - before).abs().max()) <= TOL
    merged_theirs = theirs.merge_and_unload().state_dict()
    merged_ours = unload_lora(ours).state_dict()
    assert max(float((merged_theirs[k] - merged_ours[k]).abs().max()) for k in merged_theirs) \
        <= TOL


def test_dora_magnitude_starts_at_the_column_norm_and_gets_gradients() -> None:
    model = llama()
    inject_lora(model, AdapterConfig(r=4, target_modules=["q_proj"], use_dora=True))
    layer = model.model.layers[0].self_attn.q_proj
    torch.testing.assert_close(layer.lora_magnitude_vector["default"],
                               layer.base.weight.norm(dim=1))
    assert torch.equal(logits(model, llama), logits(llama(), llama))     # B = 0: the base
    model.train()
    model(input_ids=IDS, labels=IDS).loss.backward()
    assert layer.lora_magnitude_vector["default"].grad is not None


def test_bad_input_names_the_value_and_changes_nothing() -> None:
    ours, _ = two_adapters()
    snap = {k: v.clone() for k, v in ours.state_dict().items()}
    cases = [
        (lambda: set_adapter(ours, "nope"), "adapter 'nope' is not allowed; the model's "
                                           "adapters are: default, other"),
        (lambda: add_weighted_adapter(ours, ["default", "other"], [1, 1], "x",
                                      combination_type="linear"), "one rank"),
        (lambda: add_weighted_adapter(ours, ["default"], [1], "x", combination_type="bogus"),
         "combination_type='bogus' is not allowed"),
        (lambda: add_adapter(ours, "other", AdapterConfig(**QV)), "already has an adapter"),
        (lambda: inject_lora(ours, AdapterConfig(target_modules=["embed_tokens"],
                                                 lora_bias=True), adapter_name="d"),
         "lora_bias=True is not supported on nn.Embedding"),   # DoRA there: issue 26
    ]
    for fn, match in cases:
        with pytest.raises(LoralabError, match=match):
            fn()
        assert all(torch.equal(snap[k], v) for k, v in ours.state_dict().items())
    delete_adapter(ours, "other")
    with pytest.raises(LoralabError, match="only adapter; use unload"):
        delete_adapter(ours, "default")
    assert all(isinstance(m, LoRALinear) for m in lora_layers(ours).values())
    assert all(m.adapter_names == ["default"] for m in lora_layers(ours).values())


def test_deleting_the_active_adapter_activates_another() -> None:
    ours, _ = two_adapters()
    set_adapter(ours, "other")
    delete_adapter(ours, "other")
    fresh = llama()
    inject_lora(fresh, AdapterConfig(r=4, lora_alpha=8, **QV))
    with torch.no_grad():
        for (_, p), (_, q) in zip(sorted(ours.state_dict().items()),
                                   sorted(fresh.state_dict().items()), strict=True):
            q.copy_(p)
    assert torch.equal(logits(ours, llama), logits(fresh, llama))
    assert copy.deepcopy(ours) is not None

"""``add_weighted_adapter``'s eleven combinations against PEFT 0.21 (tiny Llama, GPT-2).

The same two trained adapters in loralab and in PEFT (copied tensors); each combination runs
in both and the new adapter's factors (SVD forms: its ``B A``, whose signs are free) and the
model's logits agree. DARE draws random masks: PEFT draws them from torch's global generator
right after it has built the new adapter, so the test reseeds that generator at that moment
(wrapping PEFT's ``_freeze_adapter``, called just before the first draw) and gives loralab a
generator seeded the same: both draw the same masks, in the same order, or the test fails.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

peft = pytest.importorskip("peft")
pytest.importorskip("transformers")

from test_transformers import gpt2, llama, logits, train_like  # noqa: E402

from loralab.errors import LoralabError  # noqa: E402
from loralab.lora import AdapterConfig, add_adapter, inject_lora, lora_layers, set_adapter  # noqa: E402,E501
from loralab.lora.weighted import COMBINATIONS, add_weighted_adapter  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SEED = 123
# model maker, adapter "one" fields, adapter "two" fields (each has modules the other lacks)
MODELS = {
    "llama": (llama, {"target_modules": ["q_proj", "v_proj"]},
              {"target_modules": ["q_proj", "o_proj"], "use_rslora": True}),
    "gpt2": (gpt2, {"target_modules": ["c_attn", "wte"], "fan_in_fan_out": True},
             {"target_modules": ["c_attn"], "fan_in_fan_out": True}),
}


def pair(model: str, r_b: int = 4) -> tuple[nn.Module, nn.Module]:
    """Adapters 'one' (r=4, α=8) and 'two' (r=r_b, α=4) in loralab and in PEFT, equal tensors."""
    make, fa, fb = MODELS[model]
    ours = make()
    inject_lora(ours, AdapterConfig(r=4, lora_alpha=8, **fa), adapter_name="one")
    add_adapter(ours, "two", AdapterConfig(r=r_b, lora_alpha=4, **fb))
    train_like(ours)
    set_adapter(ours, "two")
    train_like(ours, seed=2)
    set_adapter(ours, "one")
    theirs = peft.get_peft_model(make(), peft.LoraConfig(r=4, lora_alpha=8, **fa),
                                 adapter_name="one")
    theirs.add_adapter("two", peft.LoraConfig(r=r_b, lora_alpha=4, **fb))
    sd = {k.replace(".base.", ".base_layer."): v for k, v in ours.state_dict().items()}
    with torch.no_grad():
        for k, v in theirs.state_dict().items():
            key = k.removeprefix("base_model.model.")
            if "lora_" in key:
                v.copy_(sd[key])
    return ours, theirs.eval()


def peft_mix(theirs: nn.Module, monkeypatch: pytest.MonkeyPatch, *args, **kwargs) -> None:
    """PEFT's add_weighted_adapter with the global generator reseeded just before its draws."""
    import peft.tuners.lora.model as peft_model

    freeze = peft_model._freeze_adapter

    def freeze_then_seed(*a, **k):
        freeze(*a, **k)
        torch.manual_seed(SEED)

    monkeypatch.setattr(peft_model, "_freeze_adapter", freeze_then_seed)
    theirs.add_weighted_adapter(*args, **kwargs)


def compare(ours: nn.Module, theirs: nn.Module, model: str, svd: bool) -> int:
    """Max differences of the new adapter 'mix', per layer; returns the layers compared."""
    n = 0
    for path, layer in lora_layers(ours).items():
        if "mix" not in layer.r:
            continue
        pl = theirs.base_model.model.get_submodule(path)
        a_p, b_p = (pl.lora_A["mix"].weight, pl.lora_B["mix"].weight) if "mix" in pl.lora_A \
            else (pl.lora_embedding_A["mix"], pl.lora_embedding_B["mix"])
        a, b = layer.factors("mix")
        if svd:                              # signs of singular vectors are free: compare B A
            torch.testing.assert_close(b @ a, b_p @ a_p, atol=1e-5, rtol=1e-4)
        else:
            torch.testing.assert_close(a, a_p, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(b, b_p, atol=1e-6, rtol=1e-5)
        n += 1
    set_adapter(ours, "mix")
    theirs.set_adapter("mix")
    make = MODELS[model][0]
    torch.testing.assert_close(logits(ours, make), logits(theirs, make), atol=1e-4, rtol=1e-4)
    return n


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("combination", [c for c in COMBINATIONS if c != "cat"])
def test_every_combination_gives_peft_weights(combination: str, model: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    svd = combination.endswith("svd")
    ours, theirs = pair(model, r_b=2 if svd else 4)
    kw = {} if combination in ("linear", "svd") else {"density": 0.5}
    if "ties" in combination:
        kw["majority_sign_method"] = "frequency" if model == "gpt2" else "total"
    weights = [0.7, -0.4]                                  # a negative weight subtracts
    add_weighted_adapter(ours, ["one", "two"], weights, "mix", combination_type=combination,
                         generator=torch.Generator().manual_seed(SEED), **kw)
    peft_mix(theirs, monkeypatch, ["one", "two"], weights, "mix", combination_type=combination,
             **kw)
    assert compare(ours, theirs, model, svd) > 0


@pytest.mark.parametrize("combination", ["svd", "dare_ties_svd"])
def test_svd_options_give_peft_weights(combination: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    ours, theirs = pair("llama", r_b=2)
    kw = {"svd_rank": 3, "svd_clamp": 0.9, "svd_full_matrices": False}
    if combination != "svd":
        kw["density"] = 0.7
    add_weighted_adapter(ours, ["one", "two"], [1.0, 1.0], "mix", combination_type=combination,
                         generator=torch.Generator().manual_seed(SEED), **kw)
    peft_mix(theirs, monkeypatch, ["one", "two"], [1.0, 1.0], "mix", combination_type=combination,
             **kw)
    assert all(m.r["mix"] == 3 for m in lora_layers(ours).values() if "mix" in m.r)
    assert compare(ours, theirs, "llama", svd=True) > 0


def test_cat_with_a_negative_weight_is_the_exact_difference() -> None:
    ours, _ = pair("llama", r_b=2)
    add_weighted_adapter(ours, ["one", "two"], [1.0, -1.0], "diff", combination_type="cat")
    for layer in lora_layers(ours).values():
        if "diff" in layer.r:
            want = sum(s * layer.delta_weight(n) for n, s in (("one", 1), ("two", -1))
                       if n in layer.r)
            torch.testing.assert_close(layer.delta_weight("diff"), want, atol=1e-6, rtol=1e-5)


def test_density_one_prunes_nothing_and_linear_has_cross_terms() -> None:
    """DARE keeping every entry is the linear mix, entry for entry; and the linear mix of one
    adapter with itself is (√w1 + √w2)²·ΔW, not (w1 + w2)·ΔW: B A picks up the cross terms."""
    ours, _ = pair("llama")
    add_weighted_adapter(ours, ["one", "one"], [0.3, 0.5], "lin", combination_type="linear")
    add_weighted_adapter(ours, ["one", "two"], [1.0, 1.0], "same", combination_type="dare_linear",
                         density=1.0)
    add_weighted_adapter(ours, ["one", "two"], [1.0, 1.0], "lin2", combination_type="linear")
    cross = (0.3 ** 0.5 + 0.5 ** 0.5) ** 2
    for layer in lora_layers(ours).values():
        if "same" in layer.r:
            torch.testing.assert_close(layer.delta_weight("same"), layer.delta_weight("lin2"))
        if "lin" in layer.r:
            torch.testing.assert_close(layer.delta_weight("lin"),
                                       cross * layer.delta_weight("one"))


BAD = [
    ({"combination_type": "bogus"}, "combination_type='bogus' is not allowed"),
    ({"combination_type": "ties"}, "density=None is not allowed with combination 'ties'"),
    ({"combination_type": "dare_ties_svd", "density": 0.0}, "density=0.0 is not allowed"),
    ({"combination_type": "magnitude_prune", "density": 1.5}, "0 < density <= 1"),
    ({"combination_type": "svd", "density": 0.5}, "density=0.5 is not allowed with "
                                                  "combination 'svd'"),
    ({"combination_type": "ties", "density": 0.5, "majority_sign_method": "most"},
     "majority_sign_method='most' is not allowed"),
    ({"combination_type": "svd", "svd_clamp": 2}, "svd_clamp=2 is not allowed"),
    ({"combination_type": "svd", "svd_driver": "lapack"}, "svd_driver='lapack' is not allowed"),
    ({"combination_type": "svd", "svd_rank": 0}, "svd_rank=0 is not allowed"),
    ({"combination_type": "svd", "svd_driver": "gesvd"}, "svd_driver='gesvd' is only allowed "
                                                         "on CUDA"),
]


@pytest.mark.parametrize(("kw", "match"), BAD, ids=[m for _, m in BAD])
def test_bad_arguments_name_the_value_and_change_nothing(kw: dict, match: str) -> None:
    ours, _ = pair("llama", r_b=2)
    snap = {k: v.clone() for k, v in ours.state_dict().items()}
    with pytest.raises(LoralabError, match=match):
        add_weighted_adapter(ours, ["one", "two"], [1.0, 1.0], "x", **kw)
    assert snap.keys() == ours.state_dict().keys()
    assert all(torch.equal(snap[k], v) for k, v in ours.state_dict().items())


def test_unequal_ranks_refused_for_the_factor_mixes() -> None:
    ours, _ = pair("llama", r_b=2)
    with pytest.raises(LoralabError, match="'dare_ties' needs adapters of one rank"):
        add_weighted_adapter(ours, ["one", "two"], [1, 1], "x", combination_type="dare_ties",
                             density=0.5)


def test_grouped_convolutions_are_refused_and_nothing_changes() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.Conv2d(8, 4, 1))
    cfg = AdapterConfig(r=4, lora_alpha=4, target_modules=["0", "1"])
    inject_lora(model, cfg, adapter_name="one")
    add_adapter(model, "two", cfg)
    snap = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(LoralabError, match="grouped convolution '0' \\(groups=2\\)"):
        add_weighted_adapter(model, ["one", "two"], [1.0, 1.0], "x", combination_type="cat")
    assert snap.keys() == model.state_dict().keys()

"""QLoRA and LoftQ: PEFT + bitsandbytes on CPU as the oracle, on a tiny Llama in 4 bit.

The Llama is built from a config (d = 64: bitsandbytes' CPU kernels need rows of at least
one 64-block), saved to a temp folder and loaded in 4 bit by transformers'
``BitsAndBytesConfig`` with ``device_map="cpu"``, as a user loads a real one.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

bnb = pytest.importorskip("bitsandbytes")
peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

from test_transformers import train_like  # noqa: E402

from loralab.errors import LoralabError  # noqa: E402
from loralab.lora import (  # noqa: E402
    AdapterConfig,
    inject_lora,
    load_adapter,
    lora_layers,
    merge_lora,
    save_adapter,
    unload,
)
from loralab.lora.qlora import (  # noqa: E402
    base_weight_bytes,
    dequantized_weight,
    prepare_model_for_kbit_training,
    quantize_model,
)
from loralab.quantizer import keep_float_compute, loftq, quantized  # noqa: E402

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore::UserWarning")]
IDS = torch.randint(1, 64, (2, 12), generator=torch.Generator().manual_seed(3))
QV = ["q_proj", "v_proj"]


def llama64() -> nn.Module:
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=32)
    return transformers.LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("llama64")
    llama64().save_pretrained(folder)
    return folder


def load4(folder: Path, double: bool = False, float_path: bool = True) -> nn.Module:
    """The 4-bit model as transformers loads it; ``float_path``: kept on bitsandbytes'
    float32 dequantize-then-matmul path on AVX512-BF16 CPUs too (what loralab does to every
    4-bit layer it wraps), so PEFT, the oracle, computes the same float math as loralab."""
    cfg = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                          bnb_4bit_use_double_quant=double,
                                          bnb_4bit_compute_dtype=torch.float32)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        folder, quantization_config=cfg, device_map="cpu").eval()
    return keep_float_compute(model) if float_path else model


def logits(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


def test_qlora_adapter_both_ways_with_peft(base_dir: Path, tmp_path: Path) -> None:
    ours = load4(base_dir)
    assert type(ours.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    inject_lora(ours, AdapterConfig(r=4, lora_alpha=8, target_modules=QV))
    layer = ours.model.layers[0].self_attn.q_proj
    assert layer.factors()[0].dtype == torch.float32 and layer.quantized
    train_like(ours)
    save_adapter(ours, tmp_path / "o")
    theirs = peft.PeftModel.from_pretrained(load4(base_dir), tmp_path / "o").eval()
    assert float((logits(ours) - logits(theirs)).abs().max()) <= 1e-4
    made = peft.get_peft_model(load4(base_dir), peft.LoraConfig(r=4, lora_alpha=8,
                                                               target_modules=QV))
    train_like(made)
    made.save_pretrained(tmp_path / "p")
    back = load4(base_dir)
    load_adapter(back, tmp_path / "p")
    assert float((logits(back) - logits(made.eval())).abs().max()) <= 1e-4
    assert not torch.equal(logits(back), logits(load4(base_dir)))


def test_every_4bit_layer_keeps_the_float_path_after_inject(base_dir: Path) -> None:
    """bitsandbytes on an AVX512-BF16 CPU repacks an eval-mode 4-bit layer for a bf16 kernel
    (and training then backpropagates through a kernel without autograd); after inject_lora
    every 4-bit layer, targeted or not, computes x·dequant(W)ᵀ in float32."""
    from bitsandbytes.functional import has_avx512bf16

    raw = load4(base_dir, float_path=False)
    x = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(0))
    k_raw = raw.model.layers[0].self_attn.k_proj           # not a LoRA target below
    exact = torch.nn.functional.linear(x, dequantized_weight(k_raw))
    if has_avx512bf16():                                    # this CPU takes the bf16 kernel
        with torch.no_grad():
            assert float((k_raw(x) - exact).abs().max()) > 1e-4
    fresh = load4(base_dir, float_path=False)
    inject_lora(fresh, AdapterConfig(r=4, lora_alpha=8, target_modules=QV))
    fours = [m for m in fresh.modules() if type(m).__name__ == "Linear4bit"]
    assert len(fours) == 14 and all(not m.support_avx512bf16_for_cpu for m in fours)
    with torch.no_grad():
        out = fresh.model.layers[0].self_attn.k_proj(x)
    assert float((out - exact).abs().max()) <= 1e-5        # float32, on every CPU


def test_training_moves_only_a_and_b_and_leaves_the_4bit_bytes(base_dir: Path) -> None:
    model = prepare_model_for_kbit_training(load4(base_dir), use_gradient_checkpointing=False)
    inject_lora(model, AdapterConfig(r=4, lora_alpha=8, target_modules=QV))
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    packed = {n: m.base.weight.data.clone() for n, m in lora_layers(model).items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n, p in model.named_parameters()
                             if p.requires_grad)
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    model.train()
    for _ in range(3):
        loss = model(input_ids=IDS, labels=IDS).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    assert all(torch.equal(m.base.weight.data, packed[n]) for n, m in lora_layers(model).items())
    assert any(torch.count_nonzero(m.factors()[1]) for m in lora_layers(model).values())


def test_merge_equals_peft_merge(base_dir: Path, tmp_path: Path) -> None:
    theirs = peft.get_peft_model(load4(base_dir), peft.LoraConfig(r=4, lora_alpha=8,
                                                                 target_modules=QV))
    train_like(theirs)
    theirs.save_pretrained(tmp_path)
    ours = load4(base_dir)
    load_adapter(ours, tmp_path)
    errors = merge_lora(ours)                  # dequantize, add, quantize again: as PEFT
    assert max(errors.values()) > 0            # the requantization rounds, and says so
    merged = theirs.merge_and_unload()
    for n, m in lora_layers(ours).items():
        torch.testing.assert_close(dequantized_weight(m.base),
                                   dequantized_weight(merged.get_submodule(n)), atol=0, rtol=0)
    assert float((logits(ours) - logits(merged)).abs().max()) <= 1e-4
    assert unload(ours) is ours and not lora_layers(ours)


def test_base_weight_bytes_of_nf4() -> None:
    """Measured from the tensors: 4-bit codes + an fp32 absmax per 64 weights = 4.5 bits;
    double quantization (absmaxes in 8 bit, blocks of 256) ≈ 4.127 bits."""
    n = 1024 * 1024
    bits = {}
    for double in (False, True):
        model = nn.Sequential(nn.Linear(1024, 1024, bias=False))
        assert base_weight_bytes(model) == 4 * n                   # fp32 before
        quantize_model(model, bits=4, double_quant=double)
        bits[double] = 8 * base_weight_bytes(model) / n
    assert bits[False] == pytest.approx(4.5, abs=0.01)
    assert bits[True] == pytest.approx(4 + 8 / 64 + 32 / (64 * 256), abs=0.02)


def test_quantize_model_makes_any_module_qlora_ready() -> None:
    from loralab.lm.model import TinyLM, TinyLMConfig

    model = TinyLM(TinyLMConfig(d_model=64, n_layers=1, n_heads=4, block_size=16), seed=0)
    x = torch.randint(0, 10, (2, 8))
    with torch.no_grad():
        ref = model(x)
    names = quantize_model(model, bits=4)
    assert names and all(type(model.get_submodule(n)).__name__ == "Linear4bit" for n in names)
    with torch.no_grad():
        assert float((model(x) - ref).abs().max()) < 0.5 * float(ref.abs().max())
    inject_lora(model, AdapterConfig(r=4, target_modules=["q_proj", "v_proj"]))
    model(x).square().mean().backward()
    assert all(m.factors()[0].grad is not None for m in lora_layers(model).values())


@pytest.mark.parametrize(("alpha", "use_rslora"), [(4, False), (16, False), (16, True)])
def test_loftq_effective_weight_matches_an_independent_computation(alpha, use_rslora) -> None:
    """``Q + s·B A`` against bitsandbytes' NF4 plus torch.linalg.svd done here, α ≠ r too."""
    torch.manual_seed(0)
    lin = nn.Linear(128, 64)
    w = lin.weight.detach().clone()
    r, iters = 4, 2
    s = alpha / (r**0.5 if use_rslora else r)
    model = nn.Sequential(lin)
    inject_lora(model, AdapterConfig(r=r, lora_alpha=alpha, use_rslora=use_rslora,
                                     target_modules=["0"], init_lora_weights="loftq",
                                     loftq_config={"loftq_bits": 4, "loftq_iter": iters}))
    layer = model[0]
    effective = layer.base.weight + layer.delta_weight()
    f = bnb.functional
    low = torch.zeros_like(w)                                 # the same algorithm, by hand
    for _ in range(iters):
        q4, state = f.quantize_4bit((w - low).contiguous(), blocksize=64, quant_type="nf4")
        q = f.dequantize_4bit(q4, state)
        u, sv, vh = torch.linalg.svd(w - q, full_matrices=False)
        low = (u[:, :r] * sv[:r]) @ vh[:r]
    torch.testing.assert_close(effective, q + low, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer.base.weight, q, atol=1e-6, rtol=0)
    ours = float((w - effective).norm())
    assert ours < float((w - q).norm())                       # the adapter wins error back
    peft_like = q + s * ((u[:, :r] * sv[:r].sqrt()) @ (sv[:r].sqrt()[:, None] * vh[:r]))
    if s != 1:                                                # PEFT 0.21 drops s
        assert float((w - peft_like).norm()) > ours


def test_loftq_residual_falls_with_rank_and_8bit_is_finer() -> None:
    torch.manual_seed(0)
    w = torch.randn(64, 128)
    e = [loftq(w, r, bits=4, iters=3).residuals[-1] for r in (2, 8, 32)]
    assert e[0] > e[1] > e[2]
    assert float((w - quantized(w, bits=8)).norm()) < float((w - quantized(w, bits=4)).norm())


def test_bad_quant_input_names_the_value(base_dir: Path) -> None:
    w = torch.randn(8, 64)
    for fn, match in [(lambda: quantized(w, bits=3), "bits=3 is not allowed"),
                      (lambda: loftq(w, 2, iters=0), "loftq_iter=0"),
                      (lambda: loftq(w, 9), "rank 9 is not allowed"),
                      (lambda: AdapterConfig(target_modules=["q"], init_lora_weights="loftq",
                                             loftq_config={"loftq_bits": 2}), "loftq_bits=2")]:
        with pytest.raises(LoralabError, match=match):
            fn()
    model = load4(base_dir)
    snap = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(LoralabError, match="already quantized"):
        inject_lora(model, AdapterConfig(target_modules=QV, init_lora_weights="loftq",
                                         loftq_config={"loftq_bits": 4, "loftq_iter": 1}))
    assert not lora_layers(model)
    assert all(torch.equal(p, snap[n]) for n, p in model.named_parameters())


def test_8bit_base_merge_after_forward_is_right() -> None:
    """bitsandbytes moves an 8-bit layer's row scales to ``module.state`` at the first
    forward; dequantize, merge and the byte count must still find them."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32))
    w = model[0].weight.detach().clone()
    quantize_model(model, bits=8)
    x = torch.randn(4, 64)
    with torch.no_grad():
        model(x)                                   # scales move to the state here
    deq = dequantized_weight(model[0])
    assert float((deq - w).abs().max()) <= float(w.abs().max()) / 127
    before = base_weight_bytes(model)
    inject_lora(model, AdapterConfig(r=4, target_modules=["0"]))
    train_like(model)
    with torch.no_grad():
        ref = model(x)
    merge_lora(model)
    with torch.no_grad():
        assert float((model(x) - ref).abs().max()) < 0.05 * float(ref.abs().max())
    assert base_weight_bytes(model) == before


def test_loftq_adapter_loads_onto_its_4bit_base(tmp_path: Path) -> None:
    """LoftQ's workflow: the float model gets Q(W) + the adapter; the base saved as Q(W) and
    loaded in 4 bit then takes the adapter file as it is (no LoftQ re-run on load)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 64))
    inject_lora(model, AdapterConfig(r=4, lora_alpha=16, target_modules=["0"],
                                     init_lora_weights="loftq",
                                     loftq_config={"loftq_bits": 4, "loftq_iter": 2}))
    save_adapter(model, tmp_path)
    x = torch.randn(3, 128)
    with torch.no_grad():
        ref = model(x)
    base = nn.Sequential(nn.Linear(128, 64))
    with torch.no_grad():
        base[0].weight.copy_(model[0].base.weight)        # Q(W), which NF4 stores exactly
        base[0].bias.copy_(model[0].base.bias)
    quantize_model(base, bits=4)
    load_adapter(base, tmp_path)
    with torch.no_grad():
        assert float((base(x) - ref).abs().max()) <= 1e-4


def test_prepare_after_inject_keeps_the_adapter_trainable(base_dir: Path) -> None:
    model = load4(base_dir)
    inject_lora(model, AdapterConfig(r=4, target_modules=QV))
    prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n in trainable)

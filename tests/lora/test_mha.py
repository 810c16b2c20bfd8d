"""LoRA on ``nn.MultiheadAttention``: an independent oracle and PEFT 0.21's files both ways.

The oracle is a plain ``nn.MultiheadAttention`` whose ``in_proj_weight`` and
``out_proj.weight`` hold ``W + s·B A`` set by hand. PEFT 0.21 reads and writes the same
tensors under the same keys, but its forward and merge add the ``out_proj`` update twice
(``W_out + 2·s·B A``: huggingface/peft#3774, open); the test pins that difference down:
PEFT's outputs equal loralab's with the ``out_proj`` scale doubled.
"""

from __future__ import annotations

import pytest
import torch
from parity import check
from torch import nn

peft = pytest.importorskip("peft")

from loralab.errors import LoralabError  # noqa: E402
from loralab.lora import (  # noqa: E402
    AdapterConfig,
    inject_lora,
    load_adapter,
    lora_layers,
    merge_lora,
    mixed_adapter_batch,
    save_adapter,
    unload,
    unload_lora,
    unmerge_lora,
)
from loralab.lora.mha import LoRAMultiheadAttention  # noqa: E402


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(6, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        a, _ = self.attn(h, h, h)
        return self.head(a)


def block() -> Block:
    torch.manual_seed(0)
    return Block().eval()


X = torch.randn(2, 5, 6, generator=torch.Generator().manual_seed(1))


def out(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(X)


def oracle(layer: LoRAMultiheadAttention, out_scale: float = 1.0) -> Block:
    """A plain Block with both updates written into its weights by hand."""
    ref = block()
    a, b = layer.factors()
    oa, ob = layer.out_proj.factors()
    with torch.no_grad():
        ref.attn.in_proj_weight += layer.scaling["default"] * b @ a
        ref.attn.out_proj.weight += out_scale * layer.out_proj.scaling["default"] * ob @ oa
    return ref


def test_forward_merge_unmerge_unload_against_the_oracle():
    model = block()
    snap = {k: v.clone() for k, v in model.state_dict().items()}
    assert inject_lora(model, AdapterConfig(r=2, lora_alpha=3, target_modules=["attn"],
                                            init_lora_weights=False)) == ["attn"]
    layer = model.attn
    assert isinstance(layer.out_proj, nn.Module) and len(lora_layers(model)) == 2
    check("MultiheadAttention", "loralab vs hand-merged oracle", out(model), out(oracle(layer)))
    unmerged = out(model)
    merge_lora(model)
    check("MultiheadAttention", "merged vs unmerged", out(model), unmerged)
    unmerge_lora(model)
    restored = torch.cat([(model.state_dict()[k.replace("attn.", "attn.base.").replace(
        "attn.base.out_proj.", "attn.base.out_proj.base.")] - v).flatten()
        for k, v in snap.items() if k.startswith("attn.")])
    check("MultiheadAttention", "unmerge restores W0", restored, torch.zeros_like(restored))
    loss = model.train()(X).square().mean()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in
               (*layer.factors(), *layer.out_proj.factors()))
    model.eval()
    want = out(model)
    unload_lora(model)
    assert type(model.attn) is nn.MultiheadAttention
    check("MultiheadAttention", "merge_and_unload vs unmerged", out(model), want)


def test_files_both_ways_with_peft(tmp_path):
    pm = peft.get_peft_model(block(), peft.LoraConfig(r=2, lora_alpha=3,
                                                      target_modules=["attn"],
                                                      init_lora_weights=False)).eval()
    want = out(pm)
    pm.save_pretrained(tmp_path / "peft")
    ours = block()
    load_adapter(ours, tmp_path / "peft")
    sd = peft.get_peft_model_state_dict(pm)
    a, b = ours.attn.factors()
    assert torch.equal(a, sd["base_model.model.attn.lora_A.weight"])
    assert torch.equal(ours.attn.out_proj.factors()[1],
                       sd["base_model.model.attn.base_layer.out_proj.lora_B.weight"])
    check("MultiheadAttention", "PEFT -> loralab (oracle)", out(ours),
          out(oracle(ours.attn)))
    # PEFT 0.21 adds the out_proj update twice (peft#3774): its output is the oracle's with 2x
    check("MultiheadAttention", "PEFT -> loralab (PEFT's doubled out_proj)", want,
          out(oracle(ours.attn, out_scale=2.0)))
    save_adapter(ours, tmp_path / "ours")
    back = peft.PeftModel.from_pretrained(block(), tmp_path / "ours").eval()
    check("MultiheadAttention", "loralab -> PEFT (same tensors, PEFT's forward)", out(back),
          want)
    unload(ours)
    check("MultiheadAttention", "unload gives the base", out(ours), out(block()))


def test_refusals():
    model = block()
    with pytest.raises(LoralabError, match="use_dora"):
        inject_lora(model, AdapterConfig(target_modules=["attn"], use_dora=True))
    with pytest.raises(LoralabError, match="lora_bias"):
        inject_lora(model, AdapterConfig(target_modules=["attn"], lora_bias=True))
    with pytest.raises(LoralabError, match="kdim"):
        LoRAMultiheadAttention(nn.MultiheadAttention(8, 2, kdim=4, vdim=4), 2, 4)
    assert not lora_layers(model)
    inject_lora(model, AdapterConfig(target_modules=["attn"]))
    with pytest.raises(LoralabError, match="MultiheadAttention"):
        with mixed_adapter_batch(model.eval(), ["default", "default"]):
            pass

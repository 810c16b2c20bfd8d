"""Mixed adapter batches (``mixed_adapter_batch``), PEFT 0.21's ``adapter_names=`` the oracle.

Each row of a batch through its own adapter equals (a) PEFT's forward and ``generate`` with
the same ``adapter_names`` and (b) loralab run on that row alone with its adapter active;
``"__base__"`` rows equal the base model. Linear, Embedding and Conv2d layers, a trained copy.
"""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from parity import check  # noqa: E402
from torch import nn  # noqa: E402

peft = pytest.importorskip("peft")
T = pytest.importorskip("transformers")

from loralab.errors import LoralabError  # noqa: E402
from loralab.lora import (  # noqa: E402
    AdapterConfig,
    add_adapter,
    disable_adapters,
    inject_lora,
    load_adapter,
    merge_lora,
    mixed_adapter_batch,
    set_adapter,
    unmerge_lora,
)

ROWS = ["a", "__base__", "b", "a"]
IDS = torch.tensor([[3, 9, 27, 4, 11], [5, 1, 2, 60, 7], [8, 8, 30, 41, 2], [12, 6, 0, 19, 3]])


def tiny_llama() -> nn.Module:
    torch.manual_seed(0)
    cfg = T.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                        max_position_embeddings=64)
    return T.LlamaForCausalLM(cfg).eval()


def peft_two_adapters(tmp_path):
    """PEFT's model with adapters "a" and "b" (non-zero), saved under ``tmp_path``."""
    targets = ["q_proj", "v_proj", "down_proj", "embed_tokens"]
    pm = peft.get_peft_model(tiny_llama(), peft.LoraConfig(
        r=2, lora_alpha=4, target_modules=targets, init_lora_weights=False), adapter_name="a")
    pm.add_adapter("b", peft.LoraConfig(r=3, lora_alpha=3, target_modules=targets[:2],
                                        init_lora_weights=False))
    pm.save_pretrained(tmp_path, save_embedding_layers=False)   # the vocabulary is unchanged
    return pm.eval()


def ours_from(tmp_path) -> nn.Module:
    model = tiny_llama()
    load_adapter(model, tmp_path / "a", adapter_name="a")
    load_adapter(model, tmp_path / "b", adapter_name="b")
    return model.eval()


def test_forward_and_generate_equal_peft_and_each_row_alone(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = peft_two_adapters(tmp_path)
        want = pm(input_ids=IDS, adapter_names=ROWS).logits.detach()
        gen_want = pm.generate(input_ids=IDS, adapter_names=ROWS, max_new_tokens=4,
                               do_sample=False)
    ours = ours_from(tmp_path)
    with torch.no_grad(), mixed_adapter_batch(ours, ROWS):
        got = ours(IDS).logits
    check("mixed batch Llama (Linear+Embedding)", "PEFT vs loralab", got, want)
    with torch.no_grad():
        for i, name in enumerate(ROWS):
            if name == "__base__":
                with disable_adapters(ours):
                    alone = ours(IDS[i:i + 1]).logits
            else:
                set_adapter(ours, name)
                alone = ours(IDS[i:i + 1]).logits
            check("mixed batch Llama", f"row {i} ({name}) vs alone", got[i:i + 1], alone)
    with torch.no_grad(), mixed_adapter_batch(ours, ROWS):
        gen = ours.generate(input_ids=IDS, max_new_tokens=4, do_sample=False)
    assert torch.equal(gen, gen_want)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        beams_want = pm.generate(input_ids=IDS, adapter_names=ROWS, max_new_tokens=3,
                                 num_beams=2, do_sample=False)
        with torch.no_grad(), mixed_adapter_batch(ours, ROWS, num_beams=2):
            beams = ours.generate(input_ids=IDS, max_new_tokens=3, num_beams=2,
                                  do_sample=False)
    assert torch.equal(beams, beams_want)


class Convs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4 * 5 * 5, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).flatten(1))


def test_conv_and_trained_copy_rows_equal_each_row_alone():
    torch.manual_seed(0)
    model = Convs()
    inject_lora(model, AdapterConfig(r=2, target_modules=["conv"], modules_to_save=["head"],
                                     init_lora_weights=False), adapter_name="a")
    add_adapter(model, "b", AdapterConfig(r=2, target_modules=["conv"],
                                          init_lora_weights=False))
    with torch.no_grad():
        model.head.module.weight.add_(0.5)          # the trained copy differs from the base
    model.eval()
    x = torch.randn(3, 3, 5, 5)
    rows = ["b", "__base__", "a"]
    with torch.no_grad(), mixed_adapter_batch(model, rows):
        got = model(x)
    with torch.no_grad():
        for i, name in enumerate(rows):
            if name == "__base__":
                with disable_adapters(model):
                    alone = model(x[i:i + 1])
            else:
                set_adapter(model, name)
                alone = model(x[i:i + 1])
            check("mixed batch Conv2d + modules_to_save", f"row {i} ({name}) vs alone",
                  got[i:i + 1], alone)


def test_refusals(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_two_adapters(tmp_path)
    ours = ours_from(tmp_path)
    for names, match in ((["a", "zz"], "zz"), ("a", "one adapter name per row"),
                         ([], "not allowed")):
        with pytest.raises(LoralabError, match=match):
            with mixed_adapter_batch(ours, names):
                pass
    with pytest.raises(LoralabError, match="4 rows"), mixed_adapter_batch(ours, ["a", "b"]):
        ours(IDS)
    assert all(getattr(m, "row_adapters", None) is None for m in ours.modules())
    merge_lora(ours)
    with pytest.raises(LoralabError, match="merged"), mixed_adapter_batch(ours, ROWS):
        pass
    unmerge_lora(ours)
    ours.train()
    with pytest.raises(LoralabError, match="training"), mixed_adapter_batch(ours, ROWS):
        pass
    dora = tiny_llama()
    inject_lora(dora, AdapterConfig(target_modules=["q_proj"], use_dora=True))
    with pytest.raises(LoralabError, match="DoRA"), mixed_adapter_batch(dora, ["default"]):
        pass

"""LoRA+ (loralab.lora.optim): the parameter groups equal PEFT's."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

peft = pytest.importorskip("peft")
pytest.importorskip("transformers")

from test_transformers import llama  # noqa: E402

from loralab.lora import (  # noqa: E402
    AdapterConfig,
    inject_lora,
    loraplus_param_groups,
)

QV = {"target_modules": ["q_proj", "v_proj"]}
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_loraplus_groups_equal_peft() -> None:
    from peft.optimizers import create_loraplus_optimizer

    ours = llama()
    inject_lora(ours, AdapterConfig(r=4, lora_alpha=8, bias="all", **QV))
    theirs = peft.get_peft_model(llama(), peft.LoraConfig(r=4, lora_alpha=8, bias="all", **QV))
    opt = create_loraplus_optimizer(theirs, torch.optim.AdamW, lr=1e-3, loraplus_lr_ratio=16)
    names = {id(p): n.removeprefix("base_model.model.").replace(".base_layer.", ".base.")
             for n, p in theirs.named_parameters()}
    peft_groups = [({names[id(p)] for p in g["params"]}, g["lr"], g["weight_decay"])
                   for g in opt.param_groups]
    ours_groups = [(set(g["names"]), g["lr"], g["weight_decay"])
                   for g in loraplus_param_groups(ours, lr=1e-3, loraplus_lr_ratio=16)]
    assert ours_groups == peft_groups
    b_group = next(g for g in ours_groups if g[1] == pytest.approx(16e-3) and g[0])
    assert any("lora_B" in n for n in b_group[0])

"""PiSSA, OLoRA and the standard inits (loralab.lora.inits), PEFT as the oracle."""

from __future__ import annotations

import copy
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from loralab.errors import LoralabError  # noqa: E402
from loralab.lora import (  # noqa: E402
    AdapterConfig,
    LoRALinear,
    inject_lora,
)


def test_pissa_split_is_the_top_r_svd() -> None:
    torch.manual_seed(0)
    base = nn.Linear(12, 10)
    w0 = base.weight.detach().double().numpy().copy()
    layer = LoRALinear(base, r=3, lora_alpha=6, init_lora_weights="pissa")
    u, s, vt = np.linalg.svd(w0)
    top = (u[:, :3] * s[:3]) @ vt[:3]
    np.testing.assert_allclose(layer.delta_weight().detach().numpy(), top, atol=1e-5)
    np.testing.assert_allclose(layer.base.weight.detach().numpy(), w0 - top, atol=1e-5)


def test_pissa_equals_peft_pissa() -> None:
    from peft import LoraConfig
    from peft.tuners.lora import Linear as PeftLinear

    torch.manual_seed(0)
    base = nn.Linear(12, 10)
    twin = PeftLinear(copy.deepcopy(base), "default", r=3, lora_alpha=6,
                      config=LoraConfig(r=3, lora_alpha=6, init_lora_weights="pissa"))
    ours = LoRALinear(base, r=3, lora_alpha=6, init_lora_weights="pissa")
    torch.testing.assert_close(ours.lora_A["default"].weight, twin.lora_A["default"].weight)
    torch.testing.assert_close(ours.lora_B["default"].weight, twin.lora_B["default"].weight)
    torch.testing.assert_close(ours.base.weight, twin.base_layer.weight)


@pytest.mark.parametrize("init", [True, "gaussian", "pissa", "olora", "pissa_niter_4"])
@pytest.mark.parametrize("lora_bias", [False, True])
def test_inits_match_peft(init, lora_bias: bool) -> None:
    peft = pytest.importorskip("peft")
    from test_transformers import IDS
    from transformers import BertConfig, BertModel

    def bert() -> nn.Module:
        torch.manual_seed(0)
        return BertModel(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=48)).eval()

    fields = {"target_modules": ["query"], "init_lora_weights": init, "lora_bias": lora_bias}
    if lora_bias and init is not True:         # PEFT refuses these pairs, and so do we
        with pytest.raises(LoralabError, match="lora_bias needs init_lora_weights True"):
            AdapterConfig(**fields)
        return
    ours, theirs = bert(), bert()
    inject_lora(ours, AdapterConfig(r=4, lora_alpha=8, **fields))
    theirs = peft.get_peft_model(theirs, peft.LoraConfig(r=4, lora_alpha=8, **fields))
    layer = ours.encoder.layer[0].attention.self.query
    twin = theirs.base_model.model.encoder.layer[0].attention.self.query
    out_o, out_t = ours(input_ids=IDS).last_hidden_state, theirs(input_ids=IDS).last_hidden_state
    base = bert()(input_ids=IDS).last_hidden_state
    assert float((out_o - base).abs().max()) <= 1e-4                  # unchanged at init
    assert float((out_t - out_o).abs().max()) <= 1e-4
    if init in ("pissa", "olora"):                                     # deterministic: equal
        torch.testing.assert_close(layer.factors()[0], twin.lora_A["default"].weight)
        torch.testing.assert_close(layer.factors()[1], twin.lora_B["default"].weight)
        torch.testing.assert_close(layer.base.weight, twin.base_layer.weight)
    if init in (True, "gaussian"):
        assert torch.count_nonzero(layer.factors()[1]) == 0
    if init == "pissa_niter_4":      # randomized SVD: the same top-r energy, not the same draws
        exact = torch.linalg.svdvals(bert().encoder.layer[0].attention.self.query.weight)[:4]
        ours_e = float(layer.delta_weight().norm())
        theirs_e = float(twin.get_delta_weight("default").norm())
        assert ours_e == pytest.approx(float(exact.norm()), rel=0.05)
        assert ours_e == pytest.approx(theirs_e, rel=0.05)

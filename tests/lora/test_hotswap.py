"""Hot-swapping an adapter in place, PEFT 0.21's ``hotswap_adapter`` the oracle.

After a swap the model's outputs equal a fresh load of the new adapter (loralab's and PEFT's)
and PEFT's own hot-swap; same rank, a smaller rank (zero-padded) and a larger one (replaced);
a layer the new adapter lacks gives the base; what PEFT refuses is refused, with the model
left as it was.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import replace

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from lora_tiny import assert_same, snapshot  # noqa: E402
from parity import check  # noqa: E402
from torch import nn  # noqa: E402

peft = pytest.importorskip("peft")
T = pytest.importorskip("transformers")
from peft.utils.hotswap import hotswap_adapter as peft_hotswap  # noqa: E402

from loralab.errors import LoralabError  # noqa: E402
from loralab.lora import (  # noqa: E402
    AdapterConfig,
    LoRAParameter,
    hotswap_adapter,
    hotswap_adapter_from_state_dict,
    inject_lora,
    load_adapter,
    lora_state_dict,
    merge_lora,
    save_adapter,
)

IDS = torch.tensor([[3, 9, 27, 4, 11], [5, 1, 2, 60, 7]])


def tiny_llama() -> nn.Module:
    torch.manual_seed(0)
    cfg = T.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                        max_position_embeddings=64)
    return T.LlamaForCausalLM(cfg).eval()


def peft_adapter(folder, seed: int, **kwargs) -> None:
    """A non-zero PEFT adapter on the tiny Llama, saved in ``folder``."""
    torch.manual_seed(seed)
    config = peft.LoraConfig(**{"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"],
                                "init_lora_weights": False, **kwargs})
    peft.get_peft_model(tiny_llama(), config).save_pretrained(folder)


def logits(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits


@pytest.mark.parametrize("case, new", [
    ("same rank, new alpha", {"lora_alpha": 16}),
    ("smaller rank (padded)", {"r": 2, "lora_alpha": 3}),
    ("larger rank (replaced)", {"r": 6}),
    ("fewer targets (v_proj zeroed)", {"target_modules": ["q_proj"]}),
])
def test_swap_equals_a_fresh_load_and_peft(tmp_path, case, new):
    peft_adapter(tmp_path / "old", 1)
    peft_adapter(tmp_path / "new", 2, **new)
    ours = tiny_llama()
    load_adapter(ours, tmp_path / "old")
    hotswap_adapter(ours, tmp_path / "new")
    fresh = tiny_llama()
    load_adapter(fresh, tmp_path / "new")
    check(f"hotswap {case}", "swapped vs fresh load (loralab)", logits(ours), logits(fresh))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = peft.PeftModel.from_pretrained(tiny_llama(), tmp_path / "old").eval()
        peft_hotswap(pm, str(tmp_path / "new"), adapter_name="default", torch_device="cpu")
        check(f"hotswap {case}", "loralab swap vs PEFT swap", logits(ours), logits(pm))
    save_adapter(ours, tmp_path / "saved")
    back = peft.PeftModel.from_pretrained(tiny_llama(), tmp_path / "saved").eval()
    check(f"hotswap {case}", "loralab swapped -> PEFT", logits(back), logits(fresh))


def test_refusals_leave_the_model_as_it_was(tmp_path):
    peft_adapter(tmp_path / "old", 1)
    peft_adapter(tmp_path / "rslora", 2, use_rslora=True)
    peft_adapter(tmp_path / "k", 2, target_modules=["q_proj", "k_proj"])
    peft_adapter(tmp_path / "dora", 2, use_dora=True)
    ours = tiny_llama()
    load_adapter(ours, tmp_path / "old")
    snap = snapshot(ours)
    for folder, match in (("rslora", "use_rslora"), ("k", "k_proj"), ("dora", "use_dora")):
        with pytest.raises(LoralabError, match=match):
            hotswap_adapter(ours, tmp_path / folder)
        assert_same(ours, snap)
    with pytest.raises(LoralabError, match="no adapter named 'other'"):
        hotswap_adapter(ours, tmp_path / "old", adapter_name="other")
    merge_lora(ours)
    with pytest.raises(LoralabError, match="merged"):
        hotswap_adapter(ours, tmp_path / "old")


class Holder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 5, 7))

    def forward(self, x: torch.Tensor) -> torch.Tensor:    # x: (3, N, 7) -> (3, N, 5)
        return torch.bmm(x, self.w.transpose(1, 2))


def test_target_parameters_swap_equals_the_other_model_and_refuses_a_rank_change():
    def model(seed: int, r: int = 2) -> nn.Module:
        torch.manual_seed(0)
        m = nn.Sequential(Holder())
        torch.manual_seed(seed)
        inject_lora(m, AdapterConfig(r=r, lora_alpha=2 * r, target_modules=[],
                                     target_parameters=["0.w"], init_lora_weights=False))
        return m

    x = torch.randn(3, 4, 7)
    ours, other = model(1), model(2)
    config = AdapterConfig(r=2, lora_alpha=4, target_modules=[], target_parameters=["0.w"])
    hotswap_adapter_from_state_dict(ours, lora_state_dict(other), "default", config)
    assert isinstance(ours[0], LoRAParameter)
    with torch.no_grad():
        check("hotswap target_parameters", "swapped vs the other model", ours(x), other(x))
    with pytest.raises(LoralabError, match="only the rank may differ"):
        hotswap_adapter_from_state_dict(ours, lora_state_dict(model(3, r=3)), "default",
                                        replace(config, r=3))


def test_dora_swap_carries_the_magnitude():
    def model(seed: int) -> nn.Module:
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4))
        torch.manual_seed(seed)
        inject_lora(m, AdapterConfig(r=2, target_modules=["0", "2"], use_dora=True,
                                     init_lora_weights=False))
        with torch.no_grad():
            for layer in (m[0], m[2]):
                layer.lora_magnitude_vector["default"].mul_(1.0 + 0.1 * seed)
        return m

    x = torch.randn(3, 6)
    ours, other = model(1), model(2)
    config = AdapterConfig(r=2, target_modules=["0", "2"], use_dora=True)
    hotswap_adapter_from_state_dict(ours, lora_state_dict(other), "default", config)
    with torch.no_grad():
        check("hotswap DoRA", "swapped vs the other model", ours(x), other(x))

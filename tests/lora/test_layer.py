"""What every LoRA layer shares (loralab.lora.layer): merge/unmerge, identities in fp32/16/64."""

from __future__ import annotations

import copy
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from lora_tiny import randomize  # noqa: E402
from torch import nn  # noqa: E402

from loralab.lora import (  # noqa: E402
    LoRALinear,
    LoRAPrecisionWarning,
    merge_lora,
)


def test_merge_unmerge_identities() -> None:
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(20, 14), r=4, lora_alpha=8)
    randomize(nn.Sequential(layer))
    w0 = layer.base.weight.detach().clone()
    x = torch.randn(6, 20)
    y = layer(x)
    layer.eval()
    assert not layer.merged  # eval() never merges
    assert layer.merge() == 0.0
    assert layer.merged
    w1 = layer.base.weight.detach().clone()
    layer.merge()  # idempotent
    assert torch.equal(layer.base.weight, w1)
    torch.testing.assert_close(layer(x), y, rtol=0, atol=1e-5)
    torch.testing.assert_close(w1, w0 + layer.delta_weight(), rtol=0, atol=1e-6)
    layer.unmerge()
    layer.unmerge()  # idempotent
    assert not layer.merged
    torch.testing.assert_close(layer.base.weight, w0, rtol=0, atol=1e-6)
    torch.testing.assert_close(layer(x), y, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_merge_in_fp32_with_visible_error(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(32, 24).to(dtype), r=4, lora_alpha=8,
                       autocast_adapter_dtype=False)
    assert layer.lora_A["default"].weight.dtype == dtype
    assert LoRALinear(nn.Linear(32, 24).to(dtype), r=4, lora_alpha=8).factors()[0].dtype \
        == torch.float32          # PEFT's autocast_adapter_dtype=True
    randomize(nn.Sequential(layer))
    w0 = layer.base.weight.detach().clone()
    a, b = layer.factors()
    exact = w0.float() + b.float() @ a.float() * 2.0
    model = nn.Sequential(copy.deepcopy(layer))
    with pytest.warns(LoRAPrecisionWarning, match="rounded it by up to"):
        err = layer.merge()
    assert torch.equal(layer.base.weight, exact.to(dtype))  # one rounding of the fp32 sum
    assert err == pytest.approx(float((exact.to(dtype).float() - exact).abs().max().detach()))
    assert 0 < err == layer.merge_error
    with pytest.warns(LoRAPrecisionWarning, match="1 float16/bfloat16"):
        errors = merge_lora(model)
    assert errors == {"0": pytest.approx(err)}


def test_float64_merge_is_not_rounded_through_float32():
    """Merging a float64 layer stays in float64: merged = unmerged and unmerge restores W0
    to float64 precision (a float32 round trip would leave ~1e-7)."""
    torch.manual_seed(0)
    base = nn.Linear(64, 32).double()
    layer = LoRALinear(base, r=4, lora_alpha=8.0)
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
    w0 = base.weight.detach().clone()
    x = torch.randn(5, 64, dtype=torch.float64)
    y = layer(x)
    layer.merge()
    assert (layer(x) - y).abs().max().item() < 1e-12
    layer.unmerge()
    assert (base.weight - w0).abs().max().item() < 1e-12

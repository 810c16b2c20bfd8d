"""LoRAConv (nn.Conv1d / nn.Conv2d): the kernel update is the composition of the factors."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from loralab.errors import LoralabError
from loralab.lora import LoRAConv


def randomized(layer: LoRAConv, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in layer.factors():
            t.copy_(torch.randn(t.shape, generator=gen))


@pytest.mark.parametrize(("make", "shape"), [
    (lambda: nn.Conv2d(3, 5, 3, stride=2, padding=1), (2, 3, 9, 9)),
    (lambda: nn.Conv1d(3, 4, 1), (2, 3, 7)),
    (lambda: nn.Conv1d(4, 6, 3, padding=1), (2, 4, 8)),
], ids=["conv2d 3x3", "conv1d 1x1", "conv1d k3"])
def test_delta_is_the_kernel_of_the_lora_path_and_merges(make, shape) -> None:
    torch.manual_seed(0)
    base = make()
    w0 = base.weight.detach().clone()
    layer = LoRAConv(base, r=2, lora_alpha=4)
    randomized(layer)
    x = torch.randn(shape)
    delta = layer.delta_weight()
    assert delta.shape == w0.shape                             # (C_out, C_in, k…)
    conv = F.conv2d if x.ndim == 4 else F.conv1d
    lora_path = layer.lora_B["default"](layer.lora_A["default"](x)) * 2.0
    torch.testing.assert_close(conv(x, delta, stride=base.stride, padding=base.padding),
                               lora_path, rtol=1e-4, atol=1e-4)
    y = layer(x)
    torch.testing.assert_close(y, base(x) + lora_path, rtol=1e-5, atol=1e-5)
    layer.merge()
    torch.testing.assert_close(layer(x), y, rtol=1e-4, atol=1e-4)
    layer.unmerge()
    torch.testing.assert_close(base.weight, w0, rtol=0, atol=1e-6)


def test_split_inits_are_refused_on_convolutions() -> None:
    with pytest.raises(LoralabError, match="not supported on convolutions"):
        LoRAConv(nn.Conv2d(2, 2, 3), r=1, lora_alpha=1, init_lora_weights="pissa")
    with pytest.raises(LoralabError, match="LoRAConv wraps"):
        LoRAConv(nn.Linear(2, 2), r=1, lora_alpha=1)  # type: ignore[arg-type]

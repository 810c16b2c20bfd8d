"""TrainedCopy (loralab.lora.saved): a module trained in full beside LoRA, PEFT's
``modules_to_save``."""

from __future__ import annotations

import torch
from torch import nn

from loralab.lora import TrainedCopy


def test_the_copy_trains_and_the_original_stays() -> None:
    torch.manual_seed(0)
    head = nn.Linear(4, 2)
    w0 = head.weight.detach().clone()
    copy = TrainedCopy(head)
    assert copy.original_module is head and copy.module is not head
    assert not any(p.requires_grad for p in head.parameters())
    assert all(p.requires_grad for p in copy.module.parameters())
    assert copy.out_features == 2 and copy.weight is copy.module.weight   # read through
    x = torch.randn(3, 4)
    copy(x).sum().backward()
    with torch.no_grad():
        copy.module.weight.sub_(copy.module.weight.grad)
    assert torch.equal(head.weight, w0) and not torch.equal(copy.module.weight, w0)
    torch.testing.assert_close(copy(x), copy.module(x))
    copy.disabled = True                                  # inside disable_adapters
    torch.testing.assert_close(copy(x), head(x))

"""The seed's ``pseudo_code()``: LoRA injected into ``nn.Linear``, printed (it runs as is)."""

from __future__ import annotations

__all__ = ["PSEUDO_CODE", "pseudo_code"]

PSEUDO_CODE = '''\
import math
import torch
from torch import nn


class LoRALinear(nn.Module):
    """y = x W0ᵀ + (α/r)·(x Aᵀ) Bᵀ, with W0 frozen; A: (r, in_features), B: (out_features, r)."""

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16.0):
        super().__init__()
        self.base = base
        self.base.weight.requires_grad_(False)          # freeze W0 (and its bias)
        if self.base.bias is not None:
            self.base.bias.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.empty(r, base.in_features))   # A: (r, in)
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, r))  # B: (out, r) = 0
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))          # so BA = 0 at start
        self.scaling = alpha / r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = x @ self.base.weight.T                                  # (..., in) -> (..., out)
        if self.base.bias is not None:
            base = base + self.base.bias
        lora_update = (x @ self.lora_a.T) @ self.lora_b.T * self.scaling  # (..., r) -> (..., out)
        return base + lora_update


# Inject into the attention projections of a Transformer and train only A and B:
#   targets = {"q_proj", "k_proj", "v_proj", "o_proj"}
#   for module in list(model.modules()):
#       for child_name, child in module.named_children():
#           if child_name in targets and isinstance(child, nn.Linear):
#               setattr(module, child_name, LoRALinear(child, r=8, alpha=16))
#   for p in model.parameters():                       # train A and B only
#       p.requires_grad_(False)
#   for m in model.modules():
#       if isinstance(m, LoRALinear):
#           m.lora_a.requires_grad_(True); m.lora_b.requires_grad_(True)
#
# What production code adds (all in loralab.lora):
#   * dropout on the LoRA path:        (dropout(x) @ Aᵀ) @ Bᵀ · α/r
#   * merge / unmerge for inference:   W = W0 + (α/r)·B A, and back, exactly
#   * selective injection by module name (q/k/v/o, MLP up/down), everything else frozen
#   * adapters saved in PEFT's format: adapter_config.json + adapter_model.safetensors
'''


def pseudo_code() -> None:
    """Print the seed's pseudo code: LoRA injected into ``nn.Linear`` (it also runs as is)."""
    print(PSEUDO_CODE, end="")

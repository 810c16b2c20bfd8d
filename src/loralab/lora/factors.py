"""``ModuleFactors``: ``A`` and ``B`` as ``nn.Module`` dicts (PEFT's layout for ``nn.Linear``,
``Conv1D`` and convolutions), and the standard inits, shared by :class:`~loralab.lora.LoRALinear`
and :class:`~loralab.lora.LoRAConv`."""

from __future__ import annotations

import math

import torch
from torch import nn

from .init_option import InitOption

__all__ = ["ModuleFactors"]


class ModuleFactors:
    """``A`` and ``B`` as modules ``lora_A[name]`` / ``lora_B[name]`` (PEFT's layout for
    Linear, Conv1D and convolutions), and their standard inits.

    ``True``: A Kaiming-uniform (a = √5), B = 0; ``"gaussian"``: A ~ N(0, 1/r²), B = 0;
    ``False``: both keep a module's own random init (PEFT does not reset them).
    """

    lora_A: nn.ModuleDict
    lora_B: nn.ModuleDict
    r: dict[str, int]
    init: dict[str, InitOption]

    def factor_dicts(self) -> tuple:
        return self.lora_A, self.lora_B

    def factors(self, name: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        name = name or self.active_adapter  # type: ignore[attr-defined]
        return self.lora_A[name].weight, self.lora_B[name].weight

    def lora_bias_param(self, name: str | None = None) -> torch.Tensor | None:
        return self.lora_B[name or self.active_adapter].bias  # type: ignore[attr-defined]

    @torch.no_grad()
    def reset_standard(self, name: str, generator: torch.Generator | None = None) -> None:
        """The inits above for adapter ``name``."""
        a, b = self.factors(name)
        bias, init = self.lora_B[name].bias, self.init[name].kind
        if init == "gaussian":
            nn.init.normal_(a, std=1.0 / self.r[name], generator=generator)
        else:
            nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)
        if init == "random":        # a module's own init: B is random too
            nn.init.kaiming_uniform_(b, a=math.sqrt(5), generator=generator)
            if bias is not None:
                bound = 1 / math.sqrt(b[0].numel())
                nn.init.uniform_(bias, -bound, bound, generator=generator)
        else:
            nn.init.zeros_(b)
            if bias is not None:
                nn.init.zeros_(bias)

"""``LoRAConv``: a frozen ``nn.Conv1d`` / ``nn.Conv2d`` plus a low-rank update of its kernel.

As PEFT: ``lora_A`` is a convolution of the base's kernel size, stride and padding from
``C_in`` to ``r`` channels, ``lora_B`` a 1×1 convolution from ``r`` to ``C_out`` (with the
base's groups); ``y = base(x) + s · lora_B(lora_A(dropout(x)))``. The kernel update, in the
base's layout ``(C_out, C_in, k…)``, is::

    1×1 kernels:  ΔW = s · (B A)                      (C_out, r) @ (r, C_in)
    otherwise:    ΔW = s · conv(Aᵀ, B)ᵀ               A: (r, C_in, k…), B: (C_out, r, 1…)

(the composition of the two convolutions, computed by one convolution of the factors).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import LoralabError
from .config import InitValue
from .layer import LOW_PRECISION, LoRALayer, adapter_dtype

__all__ = ["LoRAConv"]


class LoRAConv(LoRALayer):
    """A frozen ``nn.Conv1d`` or ``nn.Conv2d`` plus a rank-r update of its kernel."""

    def __init__(self, base: nn.Conv1d | nn.Conv2d, r: int, lora_alpha: float,
                 lora_dropout: float = 0.0, use_rslora: bool = False,
                 init_lora_weights: InitValue = True, generator: torch.Generator | None = None,
                 *, lora_bias: bool = False, autocast_adapter_dtype: bool = True) -> None:
        if type(base) not in (nn.Conv1d, nn.Conv2d):
            raise LoralabError(f"LoRAConv wraps an nn.Conv1d or nn.Conv2d, got "
                               f"{type(base).__name__}")
        if init_lora_weights == "pissa":
            raise LoralabError("init_lora_weights='pissa' is not supported on convolutions; "
                               "use True or 'gaussian'")
        super().__init__(base, r, lora_alpha, lora_dropout, use_rslora, init_lora_weights,
                         lora_bias)
        w = base.weight
        conv = type(base)
        one = (1,) * (w.ndim - 2)
        kw = {"device": w.device, "dtype": adapter_dtype(w.dtype, autocast_adapter_dtype)}
        self.in_features, self.out_features = base.in_channels, base.out_channels
        self.lora_A = nn.utils.skip_init(conv, base.in_channels, r, base.kernel_size,
                                         base.stride, base.padding, bias=False, **kw)
        self.lora_B = nn.utils.skip_init(conv, r, base.out_channels, one, one,
                                         groups=base.groups, bias=lora_bias, **kw)
        self._conv_fn = F.conv1d if conv is nn.Conv1d else F.conv2d
        self.reset_lora_parameters(generator)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lora_A.weight, self.lora_B.weight

    def lora_bias_param(self) -> torch.Tensor | None:
        return self.lora_B.bias

    @torch.no_grad()
    def reset_lora_parameters(self, generator: torch.Generator | None = None) -> None:
        """As :class:`~loralab.lora.LoRALinear`: A Kaiming-uniform (``"gaussian"``:
        N(0, 1/r²)), B = 0; ``False`` leaves both random."""
        if self.merged:
            raise LoralabError("cannot re-initialise a merged LoRAConv; call unmerge() first")
        a, b = self.lora_A.weight, self.lora_B.weight
        if self.init_lora_weights == "gaussian":
            nn.init.normal_(a, std=1.0 / self.r, generator=generator)
        else:
            nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)
        if self.init_lora_weights is False:
            nn.init.kaiming_uniform_(b, a=math.sqrt(5), generator=generator)
        else:
            nn.init.zeros_(b)
        if self.lora_B.bias is not None:
            nn.init.zeros_(self.lora_B.bias)

    def delta_weight(self) -> torch.Tensor:
        """``ΔW`` in the base kernel's layout ``(C_out, C_in, k…)`` (see the module doc)."""
        a, b = self.lora_A.weight, self.lora_B.weight
        if a.dtype in LOW_PRECISION:
            a, b = a.float(), b.float()
        base_w = self.base.weight
        if tuple(base_w.shape[2:]) == (1,) * (base_w.ndim - 2):
            flat = b.flatten(1) @ a.flatten(1)  # (C_out, r) @ (r, C_in)
            return flat.view(base_w.shape[:2] + (1,) * (base_w.ndim - 2)) * self.scaling
        out = self._conv_fn(a.transpose(0, 1), b)  # (C_in, C_out, k…)
        return (out if self.base.groups > 1 else out.transpose(0, 1)) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C_in, L) or (N, C_in, H, W) -> the base's output shape."""
        y = self.base(x)
        if self.merged:
            return y
        a = self.lora_A.weight
        xl = x if x.dtype == a.dtype else x.to(a.dtype)
        if self.lora_dropout_p > 0 and self.training:
            xl = self.lora_dropout(xl)
        return (y + self.lora_B(self.lora_A(xl)) * self.scaling).to(y.dtype)

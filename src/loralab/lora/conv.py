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

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import LoralabError
from .factors import ModuleFactors
from .layer import LOW_PRECISION, LoRALayer
from .mixed import mixed_rows
from .spec import LayerSpec

__all__ = ["LoRAConv"]


class LoRAConv(ModuleFactors, LoRALayer):
    """A frozen ``nn.Conv1d`` or ``nn.Conv2d`` plus rank-r updates of its kernel.

    Arguments as :class:`~loralab.lora.LoRALinear`'s (a ``LayerSpec`` or its fields)."""

    def __init__(self, base: nn.Conv1d | nn.Conv2d, r: LayerSpec | int, *args: Any,
                 generator: torch.Generator | None = None, adapter_name: str = "default",
                 **kwargs: Any) -> None:
        if type(base) not in (nn.Conv1d, nn.Conv2d):
            raise LoralabError(f"LoRAConv wraps an nn.Conv1d or nn.Conv2d, got "
                               f"{type(base).__name__}")
        super().__init__(base)
        self.in_features, self.out_features = base.in_channels, base.out_channels
        self._conv_fn = F.conv1d if type(base) is nn.Conv1d else F.conv2d
        self.lora_A, self.lora_B = nn.ModuleDict(), nn.ModuleDict()
        self.add_adapter(adapter_name, r, *args, generator=generator, **kwargs)

    def create_factors(self, name: str, r: int, lora_bias: bool, dtype: torch.dtype) -> None:
        base, conv = self.base, type(self.base)
        one = (1,) * (base.weight.ndim - 2)
        kw = {"device": base.weight.device, "dtype": dtype}
        self.lora_A[name] = nn.utils.skip_init(conv, base.in_channels, r, base.kernel_size,
                                               base.stride, base.padding, bias=False, **kw)
        self.lora_B[name] = nn.utils.skip_init(conv, r, base.out_channels, one, one,
                                               groups=base.groups, bias=lora_bias, **kw)

    @torch.no_grad()
    def reset_lora_parameters(self, name: str, generator: torch.Generator | None = None
                              ) -> None:
        """As :class:`~loralab.lora.LoRALinear`: A Kaiming-uniform (``"gaussian"``:
        N(0, 1/r²)), B = 0; ``False`` leaves both random."""
        init = self.init[name]
        if init.kind not in ("default", "random", "gaussian"):
            raise LoralabError(f"init_lora_weights={init.peft_value!r} is not supported on "
                               "convolutions; use True or 'gaussian'")
        self.reset_standard(name, generator)

    def delta_weight(self, name: str | None = None) -> torch.Tensor:
        """``ΔW`` in the base kernel's layout ``(C_out, C_in, k…)`` (see the module doc)."""
        name = name or self.active_adapter
        a, b = self.factors(name)
        if a.dtype in LOW_PRECISION:
            a, b = a.float(), b.float()
        base_w, s = self.base.weight, self.scaling[name]
        if tuple(base_w.shape[2:]) == (1,) * (base_w.ndim - 2):
            flat = b.flatten(1) @ a.flatten(1)  # (C_out, r) @ (r, C_in)
            return flat.view(base_w.shape[:2] + (1,) * (base_w.ndim - 2)) * s
        out = self._conv_fn(a.transpose(0, 1), b)  # (C_in, C_out, k…)
        return (out if self.base.groups > 1 else out.transpose(0, 1)) * s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C_in, L) or (N, C_in, H, W) -> the base's output shape."""
        y = self.base(x)
        if self.disabled or self.merged:
            return y
        if self.row_adapters is not None:
            return mixed_rows(self, x, y, self.lora_term)
        out = y
        for name in self.active_adapters:
            out = out + self.lora_term(name, x)
        return out.to(y.dtype)

    def lora_term(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Adapter ``name``'s term ``s·lora_B(lora_A(dropout(x)))``."""
        a_mod = self.lora_A[name]
        xl = x if x.dtype == a_mod.weight.dtype else x.to(a_mod.weight.dtype)
        xl = self.lora_dropout[name](xl) if self.training else xl
        return self.lora_B[name](a_mod(xl)) * self.scaling[name]

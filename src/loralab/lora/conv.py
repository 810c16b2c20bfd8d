"""``LoRAConv``: a frozen ``nn.Conv1d`` / ``nn.Conv2d`` / ``nn.Conv3d`` plus a low-rank update
of its kernel (or DoRA).

As PEFT: ``lora_A`` is a convolution of the base's kernel size, stride and padding from
``C_in`` to ``r`` channels, ``lora_B`` a 1×1 convolution from ``r`` to ``C_out`` (with the
base's groups); ``y = base(x) + s · lora_B(lora_A(dropout(x)))``. The kernel update, in the
base's layout ``(C_out, C_in, k…)``, is::

    1×1 kernels:  ΔW = s · (B A)                      (C_out, r) @ (r, C_in)
    otherwise:    ΔW = s · conv(Aᵀ, B)ᵀ               A: (r, C_in, k…), B: (C_out, r, 1…)

(the composition of the two convolutions, computed by one convolution of the factors).

A grouped base (``groups = g > 1``) needs ``r`` divisible by ``g``. Its LoRA path is a dense
``C_in → r`` convolution followed by a grouped ``r → C_out`` one: their composition mixes every
input channel into every output channel, so it is no grouped kernel ``(C_out, C_in/g, k…)``
and cannot be merged into the base. PEFT refuses to merge it; so does loralab (a
:class:`~loralab.errors.LoralabError` naming the groups), and it refuses DoRA there, whose
weight norm ``‖W0 + ΔW‖`` needs that merged kernel.

DoRA (PEFT's ``DoraConv1dLayer`` / ``2d`` / ``3d``): magnitude ``m`` of PEFT's shape
``(1, C_out, 1…)``, the norm taken over each output channel's whole kernel, detached::

    y = b + (m/‖W0 + ΔW‖_c) ⊙ (conv(x, W0) + s · lora_B(lora_A(x)))
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
from .spec import LayerSpec, as_layer_spec

__all__ = ["CONV_TYPES", "LoRAConv", "conv_refusal"]

CONV_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_FN = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}


def conv_refusal(base: nn.Module, r: int, use_dora: bool) -> str | None:
    """Why adapter (rank ``r``, DoRA or not) cannot go on the convolution ``base``, or None."""
    groups, kind = int(getattr(base, "groups", 1)), type(base).__name__
    if groups > 1 and r % groups:
        return (f"r={r} on a {kind} with groups={groups} is not allowed; the rank must be "
                "divisible by groups (as PEFT)")
    if groups > 1 and use_dora:
        return (f"use_dora=True is not supported on a grouped {kind} (groups={groups}): the "
                "LoRA update is a dense kernel, so DoRA's norm of the merged weight is not "
                "defined; use plain LoRA there or exclude the layer")
    return None


class LoRAConv(ModuleFactors, LoRALayer):
    """A frozen ``nn.Conv1d``, ``nn.Conv2d`` or ``nn.Conv3d`` plus rank-r updates of its kernel.

    Arguments as :class:`~loralab.lora.LoRALinear`'s (a ``LayerSpec`` or its fields)."""

    supports_dora = True

    def __init__(self, base: nn.Conv1d | nn.Conv2d | nn.Conv3d, r: LayerSpec | int, *args: Any,
                 generator: torch.Generator | None = None, adapter_name: str = "default",
                 **kwargs: Any) -> None:
        if type(base) not in CONV_TYPES:
            raise LoralabError(f"LoRAConv wraps an nn.Conv1d, nn.Conv2d or nn.Conv3d, got "
                               f"{type(base).__name__}")
        super().__init__(base)
        self.in_features, self.out_features = base.in_channels, base.out_channels
        self._conv_fn = _CONV_FN[type(base)]
        self.lora_A, self.lora_B = nn.ModuleDict(), nn.ModuleDict()
        self.add_adapter(adapter_name, r, *args, generator=generator, **kwargs)

    def add_adapter(self, name: str, r: LayerSpec | int, *args: Any,
                    generator: torch.Generator | None = None, **kwargs: Any) -> None:
        """As :meth:`LoRALayer.add_adapter`, with the grouped-convolution checks first."""
        spec = as_layer_spec(r, *args, **kwargs)
        why = conv_refusal(self.base, spec.r, spec.use_dora)
        if why:
            raise LoralabError(why)
        super().add_adapter(name, spec, generator=generator)

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

    def merge_refusal(self) -> str | None:
        """PEFT's refusal: a grouped convolution's update is no grouped kernel."""
        if self.base.groups > 1:
            return (f"merging LoRA into a grouped {type(self.base).__name__} (groups="
                    f"{self.base.groups}) is not supported (as PEFT): its update is a dense "
                    "kernel; keep the model unmerged or unload() without merging")
        return None

    def magnitude_shape(self) -> tuple[int, ...]:
        """PEFT's DoRA magnitude of a convolution: ``(1, C_out, 1…)``."""
        return (1, self.out_features, *(1,) * (self.base.weight.ndim - 2))

    def delta_weight(self, name: str | None = None) -> torch.Tensor:
        """``ΔW`` in the base kernel's layout ``(C_out, C_in, k…)`` (see the module doc);
        a grouped base has none (:meth:`merge_refusal`)."""
        why = self.merge_refusal()
        if why:
            raise LoralabError(why.replace("merging LoRA into", "the kernel update of"))
        name = name or self.active_adapter
        a, b = self.factors(name)
        if a.dtype in LOW_PRECISION:
            a, b = a.float(), b.float()
        base_w, s = self.base.weight, self.scaling[name]
        if tuple(base_w.shape[2:]) == (1,) * (base_w.ndim - 2):
            flat = b.flatten(1) @ a.flatten(1)  # (C_out, r) @ (r, C_in)
            return flat.view(base_w.shape[:2] + (1,) * (base_w.ndim - 2)) * s
        return self._conv_fn(a.transpose(0, 1), b).transpose(0, 1) * s  # (C_out, C_in, k…)

    def _dora(self, name: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``y`` with DoRA adapter ``name`` applied (``y`` holds the base output so far)."""
        a_mod, b_mod = self.lora_A[name], self.lora_B[name]
        drop, base = self.lora_dropout[name], self.base
        xl = x if x.dtype == a_mod.weight.dtype else x.to(a_mod.weight.dtype)
        view = (1, -1) + (1,) * (y.ndim - 2)
        if isinstance(drop, nn.Identity) or not self.training:
            base_out = y if base.bias is None else y - base.bias.view(view)
        else:
            xl = drop(xl)
            base_out = self._conv_fn(xl.to(y.dtype), base.weight, None, base.stride,
                                     base.padding, base.dilation, base.groups)
        with torch.no_grad():
            norm = self.weight_norm(name).to(y.dtype)          # (C_out,), detached
        scale = (self.magnitude(name) / norm).view(view)       # (1, C_out, 1…)
        lora = b_mod(a_mod(xl)) * self.scaling[name]
        return y + (scale - 1) * base_out + scale * lora

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C_in, L), (N, C_in, H, W) or (N, C_in, D, H, W) -> the base's output shape."""
        y = self.base(x)
        if self.disabled or self.merged:
            return y
        if self.row_adapters is not None:
            return mixed_rows(self, x, y, self.lora_term)
        out = y
        for name in self.active_adapters:
            if self.use_dora[name]:
                out = self._dora(name, x, out)
                continue
            out = out + self.lora_term(name, x)
        return out.to(y.dtype)

    def lora_term(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Adapter ``name``'s term ``s·lora_B(lora_A(dropout(x)))``."""
        a_mod = self.lora_A[name]
        xl = x if x.dtype == a_mod.weight.dtype else x.to(a_mod.weight.dtype)
        xl = self.lora_dropout[name](xl) if self.training else xl
        return self.lora_B[name](a_mod(xl)) * self.scaling[name]

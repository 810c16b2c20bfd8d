"""``LoRALinear``: a frozen ``nn.Linear`` (or GPT-2's ``Conv1D``) plus ``ΔW = s·B A`` (or DoRA).

Shapes (PEFT's convention): ``W0: (d_out, d_in)``, ``A: (r, d_in)``, ``B: (d_out, r)``,
``s = α/r`` (``α/√r`` with rsLoRA)::

    y = x W0ᵀ + b + s · (dropout(x) Aᵀ) Bᵀ

transformers' ``Conv1D`` stores the transpose, ``W: (d_in, d_out)`` with ``y = x W + b``
(PEFT's ``fan_in_fan_out=True``): the same ``A`` and ``B`` and the same ``ΔW: (d_out, d_in)``;
only the layer's read/write pair (:meth:`~loralab.lora.LoRALayer.weight_out_in`,
:meth:`~loralab.lora.LoRALayer.write_weight`) sees the stored layout. Both take the fused
path below.

DoRA (Liu et al. 2024, ``use_dora=True``) splits the weight into a magnitude ``m: (d_out,)``
(trained, initialised to ``‖W0‖_c``, each output row's norm) and a direction::

    W' = m · (W0 + s·B A) / ‖W0 + s·B A‖_c          y = x W'ᵀ + b

with the norm treated as a constant in the backward (detached), as the paper (§4.3) and PEFT
do. Computed as ``y = b + (m/‖·‖_c) ⊙ (x W0ᵀ + s·(x Aᵀ) Bᵀ)``: no ``(d_out, d_in)`` weight
is formed but ``B A`` itself for the norm.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import LoralabError
from .factors import ModuleFactors
from .inits import loftq_init, split_init
from .layer import LOW_PRECISION, LoRALayer
from .mixed import mixed_rows
from .qlora import dequantized_weight, is_quantized, keep_float_compute, requantize
from .spec import LayerSpec
from .storage import features, is_conv1d, out_in

__all__ = ["LoRALinear"]


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 has no device argument
        return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()


class _FusedLoRA(torch.autograd.Function):
    """``y = x W0ᵀ + b + s·(x_d Aᵀ) Bᵀ`` with the scaled add fused into the base GEMM.

    ``x_d`` is ``dropout(x)`` (pass None when there is no dropout: then ``x_d = x``). Same
    math as ``base(x) + s·lora_B(lora_A(x_d))`` with fewer passes over ``(N, d)`` tensors:
    forward computes ``s·h Bᵀ (+ b)`` with ``h = x_d Aᵀ`` and lets the base GEMM accumulate
    into it (``beta = 1``); without dropout, backward lets ``gy W0`` accumulate into ``gh A``.
    The rank-r products are formed transposed, ``(r, N) = (r, d)·(d, N)``: with MKL on one AMD
    EPYC core that is 2–3.5 × faster than ``(N, d)·(d, r)`` (N = 1,024: ``x Aᵀ`` at d = 512
    162 µs against 342, ``gy B`` at d_out = 512 199 µs against 625). ``ga = (s·gy B)ᵀ x_d``,
    ``gb = gyᵀ (s·x_d Aᵀ)``. Gradients are computed only for the inputs that need them
    (normally x, A and B; W0 and b are frozen).
    ``w`` is ``(d_out, d_in)``; for a ``Conv1D`` pass its weight's transposed view.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, xd: torch.Tensor | None, w: torch.Tensor,
                bias: torch.Tensor | None, a: torch.Tensor, b: torch.Tensor,
                s: float) -> torch.Tensor:
        d_out, d_in = w.shape
        x2 = x.reshape(-1, d_in)  # (N, d_in)
        xd2 = x2 if xd is None else xd.reshape(-1, d_in)  # (N, d_in)
        hs_t = torch.mm(a, xd2.t()).mul_(s)  # s·A x_dᵀ: (r, d_in) @ (d_in, N) -> (r, N)
        # The cheap rank-r product first, then the big GEMM accumulates into it (beta = 1):
        # one pass less over (N, d_out) than adding the low-rank term afterwards.
        y = (torch.addmm(bias, hs_t.t(), b.t()) if bias is not None
             else torch.mm(hs_t.t(), b.t()))  # (N, r) @ (r, d_out)
        y.addmm_(x2, w.t())  # (N, d_out) += (N, d_in) @ (d_in, d_out)
        ctx.save_for_backward(x2 if ctx.needs_input_grad[2] else None, xd2, w, a, b, hs_t)
        ctx.s, ctx.x_shape, ctx.no_dropout = s, x.shape, xd is None
        return y.view(*x.shape[:-1], d_out)  # (..., d_out)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy: torch.Tensor):  # type: ignore[override]
        x2, xd2, w, a, b, hs_t = ctx.saved_tensors
        s = ctx.s
        need_x, need_xd, need_w, need_bias, need_a, need_b, _ = ctx.needs_input_grad
        gy2 = gy.reshape(-1, w.shape[0])  # (N, d_out)
        gx = gxd = gw = gbias = ga = gb = None
        if need_x or need_xd or need_a:
            gh_t = torch.mm(b.t(), gy2.t()).mul_(s)  # s·Bᵀ gyᵀ: (r, d_out) @ (d_out, N)
            if need_a:
                ga = torch.mm(gh_t, xd2)  # (r, N) @ (N, d_in) -> (r, d_in)
            if need_x and ctx.no_dropout:
                gx = torch.mm(gh_t.t(), a).addmm_(gy2, w).view(ctx.x_shape)  # gh A + gy W0
            elif need_x:
                gx = torch.mm(gy2, w).view(ctx.x_shape)
            if need_xd:
                gxd = torch.mm(gh_t.t(), a).view(ctx.x_shape)  # (N, r) @ (r, d_in)
        if need_b:
            # (r, N) @ (N, d_out) -> (r, d_out), transposed: faster than gy2ᵀ @ h on CPU
            gb = torch.mm(hs_t, gy2).t().contiguous()  # (d_out, r)
        if need_w:
            gw = torch.mm(gy2.t(), x2)  # (d_out, d_in)
        if need_bias:
            gbias = gy2.sum(0)
        return gx, gxd, gw, gbias, ga, gb, None


class LoRALinear(ModuleFactors, LoRALayer):
    """A frozen ``nn.Linear`` or ``Conv1D`` plus trainable low-rank updates.

    ``y = base(x) + Σ_active scaling[a] · lora_B[a](lora_A[a](dropout(x)))`` with
    ``lora_A[a].weight: (r, d_in)``, ``lora_B[a].weight: (d_out, r)``,
    ``scaling = α/r`` (``α/√r`` with ``use_rslora``); DoRA as in the module doc.

    Init (as PEFT): ``True``: A Kaiming-uniform (a=√5, i.e. U(±1/√d_in)), B = 0; ``False``:
    both Kaiming-uniform (the update starts non-zero); ``"gaussian"``: A ~ N(0, (1/r)²),
    B = 0; ``"pissa"`` / ``"pissa_niter_K"``: with ``W0 = U S Vᵀ`` the top-r part moves into
    the adapter, ``A = diag(√(S_r/s)) V_rᵀ``, ``B = U_r diag(√(S_r/s))`` (exact SVD, or
    ``torch.svd_lowrank`` with K power iterations), and the base keeps ``W0 − s·B A``;
    ``"olora"``: ``W0 = Q R``, ``B = Q_r``, ``A = R_r``, the base keeps ``W0 − s·B A``. The
    output is unchanged at init for all but ``False``.
    ``lora_bias`` gives ``lora_B`` a bias; ``autocast_adapter_dtype``: A, B in float32 over a
    float16/bfloat16 base.

    ``LoRALinear(base, spec)`` with a :class:`~loralab.lora.spec.LayerSpec` (in place of ``r``), or
    ``LoRALinear(base, r, lora_alpha, lora_dropout=0.0, use_rslora=False,
    init_lora_weights=True, *, lora_bias=False, use_dora=False, autocast_adapter_dtype=True,
    init_options=None)`` (:meth:`LayerSpec.of <loralab.lora.spec.LayerSpec.of>`); both with
    ``generator=`` and ``adapter_name=`` (``"default"``).
    """

    supports_dora = True
    supports_split_init = True

    def __init__(self, base: nn.Module, r: LayerSpec | int, *args: Any,
                 generator: torch.Generator | None = None, adapter_name: str = "default",
                 **kwargs: Any) -> None:
        if not (isinstance(base, nn.Linear) or is_conv1d(base)):
            raise LoralabError(f"LoRALinear wraps an nn.Linear or a Conv1D, got "
                               f"{type(base).__name__}")
        super().__init__(base)
        self.quantized = is_quantized(base)
        if self.quantized:
            keep_float_compute(base)
        self.out_features, self.in_features = features(base)
        self.lora_A, self.lora_B = nn.ModuleDict(), nn.ModuleDict()
        self.add_adapter(adapter_name, r, *args, generator=generator, **kwargs)

    @property
    def fan_in_fan_out(self) -> bool:
        """PEFT's flag: the base is a ``Conv1D``, storing ``W`` as ``(d_in, d_out)``."""
        return self.transposed

    def create_factors(self, name: str, r: int, lora_bias: bool, dtype: torch.dtype) -> None:
        kw = {"device": self.base.weight.device, "dtype": dtype}
        self.lora_A[name] = nn.utils.skip_init(nn.Linear, self.in_features, r, bias=False, **kw)
        self.lora_B[name] = nn.utils.skip_init(nn.Linear, r, self.out_features, bias=lora_bias,
                                               **kw)

    def weight_out_in(self) -> torch.Tensor:
        """``W0`` as ``(d_out, d_in)`` (a transposed view for ``Conv1D``, a dequantized copy
        for a 4-/8-bit base)."""
        if self.quantized:
            return dequantized_weight(self.base)
        return super().weight_out_in()

    def read_weight(self) -> torch.Tensor:
        return dequantized_weight(self.base) if self.quantized else super().read_weight()

    @torch.no_grad()
    def write_weight(self, exact: torch.Tensor) -> float:
        """Store ``exact: (d_out, d_in)`` in the base (a quantized base: quantized again,
        PEFT's merge)."""
        if self.quantized:
            return requantize(self.base, exact)
        return super().write_weight(exact)

    def factor_dtype(self, autocast_adapter_dtype: bool) -> torch.dtype:
        """float32 over a quantized base (or its compute dtype with ``autocast=False``)."""
        if self.quantized:
            compute = getattr(self.base, "compute_dtype", None) or torch.float32
            return torch.float32 if autocast_adapter_dtype else compute
        return super().factor_dtype(autocast_adapter_dtype)

    @torch.no_grad()
    def reset_lora_parameters(self, name: str, generator: torch.Generator | None = None
                              ) -> None:
        """(Re)initialise adapter ``name``'s A and B by its ``init``."""
        if self.merged:
            raise LoralabError("cannot re-initialise a merged LoRALinear; call unmerge() first")
        init = self.init[name]
        if init.loftq is not None:
            loftq_init(self, name, init.loftq)
        elif init.splits_base:
            split_init(self, name, init, generator)
        else:
            self.reset_standard(name, generator)

    def delta_weight(self, name: str | None = None) -> torch.Tensor:
        """``ΔW = scaling · B A``: (d_out, r) @ (r, d_in) -> (d_out, d_in) (also for
        ``Conv1D``); float32 for fp16/bf16 factors."""
        name = name or self.active_adapter
        a, b = self.factors(name)
        if a.dtype in LOW_PRECISION:
            a, b = a.float(), b.float()
        return (b @ a) * self.scaling[name]

    def _fused_ok(self, x: torch.Tensor) -> bool:
        if len(self.active_adapters) != 1:
            return False
        name = self.active_adapters[0]
        base, w = self.base, self.base.weight
        a_mod, b_mod = self.lora_A[name], self.lora_B[name]
        return ((type(base) is nn.Linear or self.transposed) and not self.use_dora[name]
                and not self.quantized
                and x.dtype == w.dtype == a_mod.weight.dtype and b_mod.bias is None
                and not (base._forward_hooks or base._forward_pre_hooks
                         or a_mod._forward_hooks or a_mod._forward_pre_hooks
                         or b_mod._forward_hooks or b_mod._forward_pre_hooks)
                and not _autocast_on(x.device.type))

    def _dora(self, name: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``y`` with DoRA adapter ``name`` applied (``y`` holds the base output so far)."""
        a_mod, b_mod = self.lora_A[name], self.lora_B[name]
        s, drop = self.scaling[name], self.lora_dropout[name]
        xl = x if x.dtype == a_mod.weight.dtype else x.to(a_mod.weight.dtype)
        bias = self.bias
        if isinstance(drop, nn.Identity) or not self.training:
            base_out = y if bias is None else y - bias          # x W0ᵀ, reused
        else:
            xl = drop(xl)
            base_out = F.linear(xl.to(y.dtype), self.weight_out_in())
        with torch.no_grad():
            norm = self.weight_norm(name).to(y.dtype)           # ‖W0 + s·B A‖_c, detached
        scale = (self.lora_magnitude_vector[name] / norm).view(1, -1)   # (1, d_out)
        lora = b_mod(a_mod(xl)) * s                            # (..., r) -> (..., d_out)
        return y + (scale - 1) * base_out + scale * lora

    def lora_term(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Adapter ``name``'s term ``s·(dropout(x) Aᵀ) Bᵀ``: (..., d_in) -> (..., d_out)."""
        a_mod = self.lora_A[name]
        xl = x if x.dtype == a_mod.weight.dtype else x.to(a_mod.weight.dtype)
        xl = self.lora_dropout[name](xl) if self.training else xl
        return self.lora_B[name](a_mod(xl)) * self.scaling[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., d_in) -> (..., d_out)."""
        if self.disabled or self.merged:
            return self.base(x)
        if self.row_adapters is not None:
            return mixed_rows(self, x, self.base(x), self.lora_term)
        if not self.active_adapters:
            return self.base(x)
        if self._fused_ok(x):
            name = self.active_adapters[0]
            dropout = self.training and isinstance(self.lora_dropout[name], nn.Dropout)
            xd = self.lora_dropout[name](x) if dropout else None
            a, b = self.factors(name)
            w = out_in(self.base.weight, self.transposed)   # (d_out, d_in), not quantized
            return _FusedLoRA.apply(x, xd, w, self.base.bias, a, b, self.scaling[name])
        # General path (several adapters, DoRA, autocast, hooks, mixed dtypes): PEFT's formula.
        y = self.base(x)  # (..., d_out)
        out = y
        for name in self.active_adapters:
            if self.use_dora[name]:
                out = self._dora(name, x, out)
                continue
            out = out + self.lora_term(name, x)
        return out.to(y.dtype)

"""``LoRALinear``: a frozen ``nn.Linear`` (or GPT-2's ``Conv1D``) plus ``ΔW = s·B A``.

Shapes (PEFT's convention): ``W0: (d_out, d_in)``, ``A: (r, d_in)``, ``B: (d_out, r)``,
``s = α/r`` (``α/√r`` with rsLoRA)::

    y = x W0ᵀ + b + s · (dropout(x) Aᵀ) Bᵀ

transformers' ``Conv1D`` stores the transpose, ``W: (d_in, d_out)`` with ``y = x W + b``
(PEFT's ``fan_in_fan_out=True``): the same ``A`` and ``B``, and ``ΔW`` is written into ``W``
as ``(s·B A)ᵀ``. Both take the fused path below.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import LoralabError
from .config import InitValue
from .layer import LOW_PRECISION, LoRALayer, adapter_dtype
from .targets import is_conv1d

__all__ = ["LoRALinear"]


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 has no device argument
        return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()


class _FusedLoRA(torch.autograd.Function):
    """``y = x W0ᵀ + b + s·(x_d Aᵀ) Bᵀ`` with the scaled add fused into the second GEMM.

    ``x_d`` is ``dropout(x)`` (pass None when there is no dropout: then ``x_d = x``). Same
    math as ``base(x) + s·lora_B(lora_A(x_d))`` with fewer passes over (N, d) tensors:
    forward computes ``s·h Bᵀ (+ b)`` and lets the base GEMM accumulate into it; without
    dropout, backward lets ``gy W0`` accumulate into ``gh A``. Gradients are computed only
    for the inputs that need them (normally x, A and B; W0 and b are frozen).
    ``w`` is ``(d_out, d_in)``; for a ``Conv1D`` pass its weight's transposed view.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, xd: torch.Tensor | None, w: torch.Tensor,
                bias: torch.Tensor | None, a: torch.Tensor, b: torch.Tensor,
                s: float) -> torch.Tensor:
        x2 = x.reshape(-1, x.shape[-1])  # (N, d_in)
        xd2 = x2 if xd is None else xd.reshape(-1, x.shape[-1])  # (N, d_in)
        hs = torch.mm(xd2, a.t()).mul_(s)  # s·(N, d_in) @ (d_in, r) -> (N, r)
        # The cheap rank-r product first, then the big GEMM accumulates into it (beta = 1):
        # one pass less over (N, d_out) than adding the low-rank term afterwards.
        y = torch.addmm(bias, hs, b.t()) if bias is not None else torch.mm(hs, b.t())
        y.addmm_(x2, w.t())  # (N, d_out) += (N, d_in) @ (d_in, d_out)
        ctx.save_for_backward(x2 if ctx.needs_input_grad[2] else None, xd2, w, a, b, hs)
        ctx.s, ctx.x_shape, ctx.no_dropout = s, x.shape, xd is None
        return y.view(*x.shape[:-1], w.shape[0])  # (..., d_out)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy: torch.Tensor):  # type: ignore[override]
        x2, xd2, w, a, b, hs = ctx.saved_tensors
        s = ctx.s
        need_x, need_xd, need_w, need_bias, need_a, need_b, _ = ctx.needs_input_grad
        gy2 = gy.reshape(-1, w.shape[0])  # (N, d_out)
        gx = gxd = gw = gbias = ga = gb = None
        if need_x or need_xd or need_a:
            gh = torch.mm(gy2, b).mul_(s)  # (N, d_out) @ (d_out, r) -> (N, r)
            if need_a:
                ga = torch.mm(gh.t(), xd2)  # (r, N) @ (N, d_in) -> (r, d_in)
            if need_x and ctx.no_dropout:
                gx = torch.mm(gh, a).addmm_(gy2, w).view(ctx.x_shape)  # (N, d_in)
            elif need_x:
                gx = torch.mm(gy2, w).view(ctx.x_shape)
            if need_xd:
                gxd = torch.mm(gh, a).view(ctx.x_shape)  # (N, r) @ (r, d_in)
        if need_b:
            # (r, N) @ (N, d_out) -> (r, d_out), transposed: faster than gy2ᵀ @ h on CPU
            gb = torch.mm(hs.t(), gy2).t().contiguous()  # (d_out, r)
        if need_w:
            gw = torch.mm(gy2.t(), x2)  # (d_out, d_in)
        if need_bias:
            gbias = gy2.sum(0)
        return gx, gxd, gw, gbias, ga, gb, None


class LoRALinear(LoRALayer):
    """A frozen ``nn.Linear`` or ``Conv1D`` plus a trainable low-rank update.

    ``y = base(x) + scaling · lora_B(lora_A(dropout(x)))`` with ``lora_A.weight: (r, d_in)``,
    ``lora_B.weight: (d_out, r)``, ``scaling = α/r`` (``α/√r`` with ``use_rslora``).

    Init (as PEFT): ``True``: A Kaiming-uniform (a=√5, i.e. U(±1/√d_in)), B = 0; ``False``:
    both Kaiming-uniform (the update starts non-zero); ``"gaussian"``: A ~ N(0, (1/r)²),
    B = 0; ``"pissa"``: with ``W0 = U S Vᵀ`` the top-r part moves into the adapter,
    ``A = diag(√(S_r/s)) V_rᵀ``, ``B = U_r diag(√(S_r/s))``, and the base keeps the residual
    ``W0 − s·B A``: the output is unchanged at init. ``lora_bias`` gives ``lora_B`` a bias.
    ``autocast_adapter_dtype``: A, B in float32 over a float16/bfloat16 base.
    """

    def __init__(self, base: nn.Module, r: int, lora_alpha: float, lora_dropout: float = 0.0,
                 use_rslora: bool = False, init_lora_weights: InitValue = True,
                 generator: torch.Generator | None = None, *, lora_bias: bool = False,
                 autocast_adapter_dtype: bool = True) -> None:
        if not (isinstance(base, nn.Linear) or is_conv1d(base)):
            raise LoralabError(f"LoRALinear wraps an nn.Linear or a Conv1D, got "
                               f"{type(base).__name__}")
        super().__init__(base, r, lora_alpha, lora_dropout, use_rslora, init_lora_weights,
                         lora_bias)
        self.fan_in_fan_out = is_conv1d(base)
        w = base.weight
        d_out, d_in = (w.shape[1], w.shape[0]) if self.fan_in_fan_out else w.shape
        self.in_features, self.out_features = int(d_in), int(d_out)
        kw = {"device": w.device, "dtype": adapter_dtype(w.dtype, autocast_adapter_dtype)}
        self.lora_A = nn.utils.skip_init(nn.Linear, self.in_features, r, bias=False, **kw)
        self.lora_B = nn.utils.skip_init(nn.Linear, r, self.out_features, bias=lora_bias, **kw)
        self.reset_lora_parameters(generator)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lora_A.weight, self.lora_B.weight

    def lora_bias_param(self) -> torch.Tensor | None:
        return self.lora_B.bias

    def base_weight_out_in(self) -> torch.Tensor:
        """``W0`` as ``(d_out, d_in)`` (a transposed view for ``Conv1D``)."""
        w = self.base.weight
        return w.t() if self.fan_in_fan_out else w

    @torch.no_grad()
    def reset_lora_parameters(self, generator: torch.Generator | None = None) -> None:
        """(Re)initialise A and B by ``init_lora_weights`` (PiSSA: moves the top-r SVD part)."""
        if self.merged:
            raise LoralabError("cannot re-initialise a merged LoRALinear; call unmerge() first")
        a, b = self.lora_A.weight, self.lora_B.weight
        init = self.init_lora_weights
        if init == "pissa":
            self._pissa_init()
            return
        if init == "gaussian":
            nn.init.normal_(a, std=1.0 / self.r, generator=generator)
        else:
            nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)
        if init is False:           # PEFT leaves nn.Linear's own init: B is random too
            nn.init.kaiming_uniform_(b, a=math.sqrt(5), generator=generator)
            if self.lora_B.bias is not None:
                bound = 1 / math.sqrt(self.r)
                nn.init.uniform_(self.lora_B.bias, -bound, bound, generator=generator)
        else:
            nn.init.zeros_(b)
            if self.lora_B.bias is not None:
                nn.init.zeros_(self.lora_B.bias)

    def _pissa_init(self) -> None:
        w = self.base_weight_out_in()
        if self.r > min(w.shape):
            raise LoralabError(f"init_lora_weights='pissa' needs r <= min(d_out, d_in) = "
                               f"{min(w.shape)}, got r={self.r}")
        w32 = w.detach().float()
        u, s, vh = torch.linalg.svd(w32, full_matrices=False)  # (out,k) (k,) (k,in)
        sr = s[: self.r] / self.scaling
        a = torch.diag(sr.sqrt()) @ vh[: self.r]  # (r, d_in)
        b = u[:, : self.r] @ torch.diag(sr.sqrt())  # (d_out, r)
        self.lora_A.weight.copy_(a)
        self.lora_B.weight.copy_(b)
        a, b = self.lora_A.weight.float(), self.lora_B.weight.float()  # as rounded
        w.copy_(w32 - self.scaling * (b @ a))

    def delta_weight(self) -> torch.Tensor:
        """``ΔW = scaling · B A``: (d_out, r) @ (r, d_in) -> (d_out, d_in), in the base's
        layout (transposed for ``Conv1D``); float32 for fp16/bf16 factors."""
        a, b = self.lora_A.weight, self.lora_B.weight
        if a.dtype in LOW_PRECISION:
            a, b = a.float(), b.float()
        delta = (b @ a) * self.scaling
        return delta.t() if self.fan_in_fan_out else delta

    def _fused_ok(self, x: torch.Tensor) -> bool:
        base, w, a = self.base, self.base.weight, self.lora_A.weight
        return ((type(base) is nn.Linear or self.fan_in_fan_out)
                and x.dtype == w.dtype == a.dtype and self.lora_B.bias is None
                and not (base._forward_hooks or base._forward_pre_hooks
                         or self.lora_A._forward_hooks or self.lora_A._forward_pre_hooks
                         or self.lora_B._forward_hooks or self.lora_B._forward_pre_hooks)
                and not _autocast_on(x.device.type))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., d_in) -> (..., d_out)."""
        if self.merged:
            return self.base(x)
        dropout = self.lora_dropout_p > 0 and self.training
        a = self.lora_A.weight
        if self._fused_ok(x):
            xd = self.lora_dropout(x) if dropout else None
            return _FusedLoRA.apply(x, xd, self.base_weight_out_in(), self.base.bias, a,
                                    self.lora_B.weight, self.scaling)
        # General path (autocast, hooks, subclasses, mixed dtypes): PEFT's exact formula.
        y = self.base(x)  # (..., d_out)
        xl = x if x.dtype == a.dtype else x.to(a.dtype)
        if dropout:
            xl = self.lora_dropout(xl)
        out = y + self.lora_B(self.lora_A(xl)) * self.scaling  # (..., r) -> (..., d_out)
        return out.to(y.dtype)

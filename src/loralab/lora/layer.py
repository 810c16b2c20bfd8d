"""``LoRALinear``: a frozen ``nn.Linear`` plus a trainable low-rank update ``ΔW = s·B A``.

Shapes (PEFT's convention): ``W0: (d_out, d_in)``, ``A: (r, d_in)``, ``B: (d_out, r)``,
``s = α/r`` (``α/√r`` with rsLoRA). Import it from :mod:`loralab.lora`.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from ..errors import LoralabError
from .config import InitKind, check_layer_args

__all__ = ["LoRALinear", "LoRAPrecisionWarning"]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


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


def _wide(t: torch.Tensor) -> torch.Tensor:
    """``t`` in at least float32 (float64 stays float64): merge arithmetic never narrows."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


class LoRAPrecisionWarning(UserWarning):
    """Merging into a float16/bfloat16 weight rounded it; the message says by how much."""


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update.

    ``y = base(x) + scaling · lora_B(lora_A(dropout(x)))`` with ``lora_A.weight: (r, d_in)``,
    ``lora_B.weight: (d_out, r)``, ``scaling = α/r`` (``α/√r`` with ``use_rslora``).

    Init (as PEFT): ``"default"``: A Kaiming-uniform (a=√5, i.e. U(±1/√d_in)), B = 0;
    ``"gaussian"``: A ~ N(0, (1/r)²), B = 0; ``"pissa"``: with ``W0 = U S Vᵀ`` the top-r
    part moves into the adapter, ``A = diag(√(S_r/s)) V_rᵀ``, ``B = U_r diag(√(S_r/s))``,
    and the base keeps the residual ``W0 − s·B A``: the output is unchanged at init.

    ``merge()`` / ``unmerge()`` are explicit and idempotent (``merged`` flag); ``eval()``
    and ``forward`` never merge. The wrapped layer stays reachable as ``base``.
    """

    def __init__(self, base: nn.Linear, r: int, lora_alpha: float, lora_dropout: float = 0.0,
                 use_rslora: bool = False, init: InitKind = "default",
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise LoralabError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        check_layer_args(r, lora_alpha, lora_dropout, use_rslora, init)
        w = base.weight
        self.base = base
        self.in_features, self.out_features = base.in_features, base.out_features
        self.r, self.lora_alpha, self.use_rslora, self.init = r, lora_alpha, use_rslora, init
        self.scaling = lora_alpha / math.sqrt(r) if use_rslora else lora_alpha / r
        self.lora_dropout_p = float(lora_dropout)
        self.lora_dropout = nn.Dropout(lora_dropout) if lora_dropout > 0 else nn.Identity()
        kw = {"bias": False, "device": w.device, "dtype": w.dtype}
        self.lora_A = nn.utils.skip_init(nn.Linear, self.in_features, r, **kw)  # (r, d_in)
        self.lora_B = nn.utils.skip_init(nn.Linear, r, self.out_features, **kw)  # (d_out, r)
        self.merged = False
        self.merge_error = 0.0  # max |rounding change| of the last merge (0 for fp32)
        base.weight.requires_grad_(False)
        if base.bias is not None:
            base.bias.requires_grad_(False)
        self.reset_lora_parameters(generator)

    @property
    def weight(self) -> torch.Tensor:
        """The base weight ``(d_out, d_in)`` (holds ΔW only while merged), as PEFT exposes it."""
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        """The base bias ``(d_out,)`` or None."""
        return self.base.bias

    @torch.no_grad()
    def reset_lora_parameters(self, generator: torch.Generator | None = None) -> None:
        """(Re)initialise A and B by ``self.init`` (for PiSSA: moves the top-r SVD part)."""
        if self.merged:
            raise LoralabError("cannot re-initialise a merged LoRALinear; call unmerge() first")
        a, b = self.lora_A.weight, self.lora_B.weight
        if self.init == "default":
            nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)
            nn.init.zeros_(b)
        elif self.init == "gaussian":
            nn.init.normal_(a, std=1.0 / self.r, generator=generator)
            nn.init.zeros_(b)
        else:
            self._pissa_init()

    def _pissa_init(self) -> None:
        w = self.base.weight
        if self.r > min(w.shape):
            raise LoralabError(f"init='pissa' needs r <= min(d_out, d_in) = {min(w.shape)}, "
                               f"got r={self.r}")
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
        """``ΔW = scaling · B A``: (d_out, r) @ (r, d_in) -> (d_out, d_in); fp32 for fp16/bf16."""
        a, b = self.lora_A.weight, self.lora_B.weight
        if a.dtype in _LOW_PRECISION:
            a, b = a.float(), b.float()
        return (b @ a) * self.scaling

    @torch.no_grad()
    def merge(self, warn: bool = True) -> float:
        """Add ΔW into the base weight (no-op when merged). Returns the rounding error.

        For a float16/bfloat16 base the sum ``W0 + ΔW`` is formed in float32 and rounded
        once; the return value (also kept in ``merge_error``) is ``max |rounded − exact|``
        over the weight, and with ``warn`` a :class:`LoRAPrecisionWarning` states it next
        to the largest ``|ΔW|`` entry (when they are alike, the update was rounded away).
        For float32 the return value is 0.0 (the sum is the float32 sum).
        """
        if self.merged:
            return self.merge_error
        w = self.base.weight
        delta = self.delta_weight()  # (d_out, d_in), float32 for fp16/bf16
        exact = _wide(w) + delta
        w.copy_(exact)
        self.merge_error = float((_wide(w) - exact).abs().max()) if w.dtype != exact.dtype \
            else 0.0
        self.merged = True
        if warn and self.merge_error > 0:
            warnings.warn(f"merging LoRA into a {str(w.dtype).removeprefix('torch.')} weight "
                          f"{tuple(w.shape)} rounded it by up to {self.merge_error:.3g} "
                          f"(largest |ΔW| entry: {float(delta.abs().max()):.3g})",
                          LoRAPrecisionWarning, stacklevel=2)
        return self.merge_error

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract ΔW from the base weight again (no-op when not merged).

        Exact up to float rounding: ≤ ~1e-6 relative in float32; in float16/bfloat16 the
        merge and unmerge roundings add up (see ``merge_error``).
        """
        if not self.merged:
            return
        w = self.base.weight
        w.copy_(_wide(w) - self.delta_weight())
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., d_in) -> (..., d_out)."""
        if self.merged:
            return self.base(x)
        base, w, a = self.base, self.base.weight, self.lora_A.weight
        dropout = self.lora_dropout_p > 0 and self.training
        if (type(base) is nn.Linear and x.dtype == w.dtype == a.dtype
                and not (base._forward_hooks or base._forward_pre_hooks
                         or self.lora_A._forward_hooks or self.lora_A._forward_pre_hooks
                         or self.lora_B._forward_hooks or self.lora_B._forward_pre_hooks)
                and not _autocast_on(x.device.type)):
            xd = self.lora_dropout(x) if dropout else None
            return _FusedLoRA.apply(x, xd, w, base.bias, a, self.lora_B.weight, self.scaling)
        # General path (autocast, hooks, subclasses, mixed dtypes): PEFT's exact formula.
        y = base(x)  # (..., d_out)
        xl = x if x.dtype == a.dtype else x.to(a.dtype)
        if dropout:
            xl = self.lora_dropout(xl)
        out = y + self.lora_B(self.lora_A(xl)) * self.scaling  # (..., r) -> (..., d_out)
        return out.to(y.dtype)

    def extra_repr(self) -> str:
        return (f"r={self.r}, lora_alpha={self.lora_alpha}, scaling={self.scaling:.4g}, "
                f"init={self.init!r}, merged={self.merged}")

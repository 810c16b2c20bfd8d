"""Inits that split the base weight: PiSSA (exact or fast SVD) and OLoRA (QR), as PEFT.

Each moves a rank-r part ``s·B A`` of ``W0: (d_out, d_in)`` into the adapter and leaves the
base with the residual ``W0 − s·B A``, so the output is unchanged at init:

* ``"pissa"``: ``W0 = U S Vᵀ``; ``A = diag(√(S_r/s)) V_rᵀ``, ``B = U_r diag(√(S_r/s))``;
* ``"pissa_niter_K"``: the same from ``torch.svd_lowrank(W0, r, niter=K)`` (randomized: the
  same distribution and the same residual as PEFT's, the same tensors only for the same RNG);
* ``"olora"``: ``W0 = Q R`` (QR); ``B = Q_r`` (the first r columns), ``A = R_r`` (rows);
* ``"loftq"``: LoftQ (:func:`loralab.quantizer.loftq`): the base becomes ``Q(W)`` (dequantized,
  as PEFT leaves it: quantize it for QLoRA) and ``s·B A`` the rank-r fit of ``W − Q(W)``,
  so ``Q + s·B A ≈ W`` for any α and r (PEFT 0.21 drops ``s``: right only for α = r).
"""

from __future__ import annotations

import torch

from ..errors import LoralabError
from ..quantizer import loftq
from .init_option import InitOption, LoftQConfig

__all__ = ["loftq_init", "split_init"]


def _factors(w: torch.Tensor, r: int, s: float, init: InitOption,
             generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)`` with ``s·B A`` the init's rank-r part of ``w: (d_out, d_in)`` (float32)."""
    if init.kind == "olora":
        q, rr = torch.linalg.qr(w)                              # (out, k), (k, in)
        return rr[:r].contiguous(), q[:, :r].contiguous()
    if init.pissa_niter is None:
        u, sv, vh = torch.linalg.svd(w, full_matrices=False)    # (out,k) (k,) (k,in)
    else:
        niter = init.pissa_niter
        with torch.random.fork_rng(devices=[]):
            if generator is not None:
                torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
            u, sv, v = torch.svd_lowrank(w, r, niter=niter)
        vh = v.t()
    sr = sv[:r] / s
    a = torch.diag(sr.sqrt()) @ vh[:r]                          # (r, d_in)
    b = u[:, :r] @ torch.diag(sr.sqrt())                        # (d_out, r)
    return a, b


@torch.no_grad()
def split_init(layer: torch.nn.Module, name: str, init: InitOption,
               generator: torch.Generator | None = None) -> None:
    """Initialise adapter ``name`` of a LoRALinear by ``init`` (PiSSA or OLoRA) and leave the
    residual in the base."""
    w = layer.weight_out_in()
    r, s = layer.r[name], layer.scaling[name]
    if r > min(w.shape):
        raise LoralabError(f"init_lora_weights={init.peft_value!r} needs r <= min(d_out, d_in) "
                           f"= {min(w.shape)}, got r={r}")
    w32 = w.detach().float()
    a, b = _factors(w32, r, s, init, generator)
    a_param, b_param = layer.factors(name)
    a_param.copy_(a)
    b_param.copy_(b)
    a, b = a_param.float(), b_param.float()                     # as rounded
    layer.write_weight(w32 - s * (b @ a))


@torch.no_grad()
def loftq_init(layer: torch.nn.Module, name: str, options: LoftQConfig) -> None:
    """LoftQ for adapter ``name`` of a float LoRALinear: base ← Q(W), ``s·B A`` ≈ W − Q(W)."""
    w = layer.weight_out_in()
    fit = loftq(w, layer.r[name], layer.scaling[name], bits=options.bits, iters=options.iters)
    a_param, b_param = layer.factors(name)
    a_param.copy_(fit.a)
    b_param.copy_(fit.b)
    layer.write_weight(fit.q)

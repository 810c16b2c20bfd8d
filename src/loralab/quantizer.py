"""Quantization as QLoRA uses it, and LoftQ's alternating fit (bitsandbytes underneath).

* 4 bit: NormalFloat (NF4) or FP4 in blocks of 64 with a float32 absmax per block, as
  bitsandbytes' ``quantize_4bit`` (QLoRA's storage);
* 8 bit: one absmax per output row, ``q = round(127·w/absmax)`` (bitsandbytes'
  ``Linear8bitLt`` storage).

:func:`quantized` gives ``Q(W)`` (dequantized, float32). :func:`loftq` is LoftQ's Algorithm 1
(Li et al. 2023) with the LoRA scale put back: starting from ``B A = 0``, ``T`` rounds of ::

    Q_t = Q(W − s·B_{t−1} A_{t−1}),      s·B_t A_t = best rank-r approximation of W − Q_t

so that ``Q + s·B A ≈ W`` for any ``s = α/r`` (or ``α/√r``). PEFT 0.21 writes the SVD
factors without dividing by ``s``, which is right only for ``s = 1`` (PEFT issue 1982).
Everything here is a pure function of its inputs; bitsandbytes is imported on first use
(``pip install "loralab[qlora]"``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import LoralabError

__all__ = ["BITS", "LoftQResult", "QUANT_HINT", "bnb", "keep_float_compute", "loftq",
           "quantized"]

BITS: tuple[int, ...] = (4, 8)
QUANT_HINT = 'pip install "loralab[qlora]"'


def _drop_hub_kernel_warning(record: logging.LogRecord) -> bool:
    """bitsandbytes (0.49+) on a CPU with AVX512-BF16 tries, on import, to fetch a bf16
    4-bit kernel from the Hugging Face hub and logs a warning when it cannot (offline, or
    the repository is not trusted). loralab never runs that kernel (:func:`keep_float_compute`),
    so the warning says nothing true about a loralab run: it is dropped, nothing else is."""
    return not str(record.msg).startswith("Failed to load CPU gemm_4bit_forward")


def bnb() -> Any:
    """The bitsandbytes module, or one clear line saying how to install it."""
    log = logging.getLogger("bitsandbytes.backends.cpu.ops")
    if _drop_hub_kernel_warning not in log.filters:
        log.addFilter(_drop_hub_kernel_warning)
    try:
        import bitsandbytes
    except ImportError:
        raise LoralabError(f"this needs bitsandbytes, which is not installed; {QUANT_HINT}") \
            from None
    return bitsandbytes


def keep_float_compute(module: torch.nn.Module) -> torch.nn.Module:
    """Keep a bitsandbytes ``Linear4bit`` (or every one inside ``module``) on its float
    dequantize-then-matmul path on CPUs with AVX512-BF16 (why: :mod:`loralab.lora.qlora`); a
    weight already repacked for the bf16 kernel is packed back (its block scales keep the
    bfloat16 rounding the repacking gave them: call this before the first eval forward, as
    loralab's loaders and :func:`~loralab.lora.inject_lora` do). Returns ``module``."""
    for m in module.modules():
        if type(m).__name__ != "Linear4bit" or not hasattr(m, "support_avx512bf16_for_cpu"):
            continue
        m.support_avx512bf16_for_cpu = False
        state = getattr(m.weight, "quant_state", None)
        if state is not None and getattr(state, "packing_format_for_cpu", False):
            from bitsandbytes.nn.modules import _convert_weight_packed_for_cpu_inverse

            m.weight.data, m.weight.quant_state = _convert_weight_packed_for_cpu_inverse(
                m.weight.data, state)
    return module


def quantized(w: torch.Tensor, bits: int = 4, quant_type: str = "nf4",
              blocksize: int = 64) -> torch.Tensor:
    """``Q(W)``: ``w: (d_out, d_in)`` quantized and dequantized again (float32, same shape)."""
    if bits not in BITS:
        raise LoralabError(f"bits={bits!r} is not allowed; use 4 or 8")
    if quant_type not in ("nf4", "fp4"):
        raise LoralabError(f"quant_type={quant_type!r} is not allowed; use 'nf4' or 'fp4'")
    w32 = w.detach().float().contiguous()
    if not bool(torch.isfinite(w32).all()):
        raise LoralabError("the weight has NaN/Inf entries; only finite weights are quantized")
    if bits == 8:
        absmax = w32.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)    # (d_out, 1)
        return torch.round(w32 / absmax * 127).clamp(-127, 127) * absmax / 127
    f = bnb().functional
    q, state = f.quantize_4bit(w32, blocksize=blocksize, quant_type=quant_type)
    return f.dequantize_4bit(q, state).float()


@dataclass
class LoftQResult:
    """LoftQ on one matrix: the quantized base ``q`` (dequantized), ``A: (r, d_in)``,
    ``B: (d_out, r)`` with ``q + scaling·B A ≈ W``, and ``‖W − q − s·B A‖_F`` after each round."""

    q: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    residuals: list[float] = field(default_factory=list)


def loftq(w: torch.Tensor, rank: int, scaling: float = 1.0, bits: int = 4, iters: int = 1,
          quant_type: str = "nf4") -> LoftQResult:
    """LoftQ's alternating fit (module doc) of ``w: (d_out, d_in)``, ``iters`` rounds."""
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise LoralabError(f"loftq_iter={iters!r} is not allowed; it must be an integer >= 1")
    k = min(w.shape)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= k:
        raise LoralabError(f"rank {rank!r} is not allowed; it must be in 1..{k} "
                           f"(min(d_out, d_in) of a {tuple(w.shape)} weight)")
    if not scaling > 0:
        raise LoralabError(f"scaling={scaling!r} is not allowed; it must be > 0")
    w32 = w.detach().float()
    low = torch.zeros_like(w32)                         # s·B A, 0 at the start
    out = LoftQResult(q=w32, a=torch.zeros(rank, w.shape[1]), b=torch.zeros(w.shape[0], rank))
    for _ in range(iters):
        q = quantized(w32 - low, bits, quant_type)
        u, sv, vh = torch.linalg.svd(w32 - q, full_matrices=False)   # (out,k) (k,) (k,in)
        root = (sv[:rank] / scaling).sqrt()
        b, a = u[:, :rank] * root, root[:, None] * vh[:rank]        # s·B A = U_r S_r V_rᵀ
        low = scaling * (b @ a)
        out = LoftQResult(q=q, a=a, b=b, residuals=[*out.residuals,
                                                    float((w32 - q - low).norm())])
    return out

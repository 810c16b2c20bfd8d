"""LoftQ's residual ‖W − Q − s·B A‖_F: loralab against an independent loop, and PEFT 0.21's
formula, for α = r (s = 1) and α ≠ r.

Independent loop: bitsandbytes' own ``quantize_4bit``/``dequantize_4bit`` (NF4, blocks of 64)
and ``torch.linalg.svd``, written here from the LoftQ paper's Algorithm 1: Q_t = NF4(W − L_{t-1}),
L_t = the rank-r SVD of W − Q_t. loralab stores B A = L_t / s, so the layer computes
Q + s·B A = Q + L_t for any s. PEFT 0.21 (``peft.utils.loftq_utils.loftq_init``) stores the SVD
factors as they are (B A = L_t, its PEFT issue 1982), so its layer computes Q + s·L_t: exact only
when s = 1; its residual is computed here from the same Q and L_t (PEFT's own LoftQ does not run
on a CPU).

    .venv/bin/python benchmarks/loftq_check.py
"""

from __future__ import annotations

import bitsandbytes.functional as bf
import torch

from loralab.lora import AdapterConfig, inject_lora
from loralab.quantizer import loftq


def nf4(w: torch.Tensor) -> torch.Tensor:
    packed, state = bf.quantize_4bit(w, blocksize=64, quant_type="nf4")
    return bf.dequantize_4bit(packed, state)


def independent(w: torch.Tensor, r: int, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Q_T, L_T)`` after ``iters`` rounds."""
    low = torch.zeros_like(w)
    for _ in range(iters):
        q = nf4(w - low)
        u, s, vh = torch.linalg.svd(w - q, full_matrices=False)
        low = (u[:, :r] * s[:r]) @ vh[:r]
    return q, low


def main() -> None:
    torch.manual_seed(0)
    w = torch.randn(256, 512)
    iters = 5
    print(f"W: 256×512 Gaussian, ‖W‖_F = {float(w.norm()):.2f}, NF4 blocks of 64, "
          f"{iters} rounds; ‖W − NF4(W)‖_F = {float((w - nf4(w)).norm()):.3f}")
    print("| r | α | s | loralab layer | independent | loralab − independent | "
          "PEFT 0.21 formula |")
    print("|---|---|---|---|---|---|---|")
    for r, alpha, rs in ((16, 16, False), (16, 64, False), (4, 16, False), (16, 16, True)):
        s = alpha / r ** 0.5 if rs else alpha / r
        layer = torch.nn.Sequential(torch.nn.Linear(512, 256, bias=False))
        with torch.no_grad():
            layer[0].weight.copy_(w)
        inject_lora(layer, AdapterConfig(r=r, lora_alpha=alpha, target_modules=["0"],
                                         use_rslora=rs, init_lora_weights="loftq",
                                         loftq_config={"loftq_bits": 4, "loftq_iter": iters}))
        ours = float((w - layer[0].effective_weight()).norm())
        q, low = independent(w, r, iters)
        ref = float((w - q - low).norm())
        peft_formula = float((w - q - s * low).norm())
        fit = loftq(w, r, s, iters=iters)
        assert abs(fit.residuals[-1] - ours) < 1e-3
        print(f"| {r} | {alpha:g}{' (rsLoRA)' if rs else ''} | {s:g} | {ours:.4f} | {ref:.4f} | "
              f"{ours - ref:+.1e} | {peft_formula:.4f} |")


if __name__ == "__main__":
    main()

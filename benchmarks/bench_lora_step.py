"""A LoRA training step against a full one, with LoRALinear's fused path on and off.

The default preset's model (a 4-layer TinyLM, d = 128 unless ``--d``, 16 × 64 tokens, AdamW,
clipping), one thread. Five steps are timed one at a time, interleaved in a shuffled order
every round so that a noisy machine slows them alike:

* ``full``: every weight trains;
* ``LoRA <targets>, fused``: r = 8 on ``attn`` or ``attn+mlp``, what a training step runs
  (``LoRALinear``'s one autograd function, ``_FusedLoRA``: the rank-r products formed
  transposed, the base GEMM accumulating into the low-rank term);
* ``LoRA <targets>, module path``: the same with the fused path off, so each layer computes
  PEFT's formula ``base(x) + s·lora_B(lora_A(x))`` through its modules.

It prints, per step kind, the minimum, the 10th percentile and the median over ``--rounds``
rounds, each as a ratio to the full step's, beside the FLOP floor of ``cost_model.py``. The
minimum is the least disturbed sample; on a shared VM the median moves by 10–20 % from run to
run while the minimum's ratios move by about 0.01–0.04.

    .venv/bin/python benchmarks/bench_lora_step.py [--rounds 60] [--d 128] [--rank 8]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

import cost_model as cm
import torch
from _peak import measure_peak, peak_line
from torch import nn

from loralab.lm.model import ATTN_MODULES, MLP_MODULES, TinyLM, TinyLMConfig, lm_loss
from loralab.lora import inject_lora
from loralab.lora.linear import LoRALinear

TARGETS = {"attn": ATTN_MODULES, "attn+mlp": ATTN_MODULES + MLP_MODULES}


def make_step(cfg: TinyLMConfig, targets: tuple[str, ...] | None, rank: int
              ) -> Callable[[], None]:
    """One training step of a fresh model: full when ``targets`` is None, else LoRA."""
    model = TinyLM(cfg, seed=0)
    if targets is not None:
        model.requires_grad_(False)
        inject_lora(model, {"target_modules": list(targets), "r": rank, "lora_alpha": 16})
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    x = torch.randint(0, cfg.vocab_size, (16, cfg.block_size),
                      generator=torch.Generator().manual_seed(0))

    def step() -> None:
        lm_loss(model(x), x.roll(-1, 1)).backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--rank", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = TinyLMConfig(d_model=args.d, n_layers=4, n_heads=4, block_size=64)
    fused = LoRALinear._fused_ok
    kinds: dict[str, tuple[Callable[[], None], Callable[..., bool]]] = {
        "full": (make_step(cfg, None, args.rank), fused)}
    for label, targets in TARGETS.items():
        kinds[f"LoRA {label}, fused"] = (make_step(cfg, targets, args.rank), fused)
        kinds[f"LoRA {label}, module path"] = (make_step(cfg, targets, args.rank),
                                               lambda *_: False)
    print(f"torch {torch.__version__}, 1 thread, d={args.d}, 4 layers, 16 x 64 tokens, "
          f"r={args.rank}, {args.rounds} rounds")
    print(peak_line(measure_peak()))
    times: dict[str, list[float]] = {k: [] for k in kinds}
    try:
        for step, rule in kinds.values():                 # warm-up: 3 steps each
            LoRALinear._fused_ok = rule
            for _ in range(3):
                step()
        rng = random.Random(0)
        for _ in range(args.rounds):
            order = list(kinds.items())
            rng.shuffle(order)
            for k, (step, rule) in order:
                LoRALinear._fused_ok = rule
                t0 = time.perf_counter()
                step()
                times[k].append(time.perf_counter() - t0)
    finally:
        LoRALinear._fused_ok = fused
    shape = cm.tiny(args.d)
    full_flops = cm.step_flops(shape, cm.Method())

    def stats(v: list[float]) -> tuple[float, float, float]:
        s = sorted(v)
        return s[0], s[int(0.1 * (len(s) - 1))], statistics.median(s)

    ref = stats(times["full"])
    print("\n| step | min ms | p10 ms | median ms | min / full | p10 / full | median / full "
          "| FLOP floor |")
    print("|---|---|---|---|---|---|---|---|")
    for k, v in times.items():
        st = stats(v)
        if k == "full":
            floor = 1.0
        else:
            targets = TARGETS[k.split()[1].rstrip(",")]
            floor = cm.step_flops(shape, cm.Method("lora", args.rank, targets)) / full_flops
        print(f"| {k} | {st[0] * 1e3:.1f} | {st[1] * 1e3:.1f} | {st[2] * 1e3:.1f} | "
              + " | ".join(f"{a / b:.3f}" for a, b in zip(st, ref, strict=True))
              + f" | {floor:.3f} |")
    print(peak_line(measure_peak(), what="matmul peak measured again at the end"))


if __name__ == "__main__":
    main()

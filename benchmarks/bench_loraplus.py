"""LoRA+ against PEFT: one train step (forward, backward, AdamW step over LoRA+'s groups) of a
LoRA model, ours (``loralab.lora.loraplus_optimizer`` on loralab's LoRA) against PEFT's
(``peft.optimizers.create_loraplus_optimizer`` on PEFT's LoRA), with plain LoRA beside them.

Same model shape for all (a transformers Llama, d = ``--d``, 4 layers, LoRA r = 8 on q, k, v,
o, gate, up, down), same batch (8 × 128 tokens); interleaved, median of ``--repeats``, the
ratio of medians and the median of paired ratios.

    .venv/bin/python benchmarks/bench_loraplus.py [--d 256] [--repeats 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from peft.optimizers import create_loraplus_optimizer  # noqa: E402

from loralab.lora import AdapterConfig, inject_lora, loraplus_optimizer  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def llama(d: int) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=512, hidden_size=d, intermediate_size=2 * d,
                                   num_hidden_layers=4, num_attention_heads=4,
                                   num_key_value_heads=4, max_position_embeddings=256)
    return transformers.LlamaForCausalLM(cfg)


def setups(d: int) -> dict:
    ours = llama(d)
    inject_lora(ours, AdapterConfig(r=8, lora_alpha=16, target_modules=TARGETS))
    plain = llama(d)
    inject_lora(plain, AdapterConfig(r=8, lora_alpha=16, target_modules=TARGETS))
    theirs = peft.get_peft_model(llama(d), peft.LoraConfig(r=8, lora_alpha=16,
                                                          target_modules=TARGETS))
    return {
        "loralab LoRA+": (ours, loraplus_optimizer(ours, torch.optim.AdamW, lr=1e-4,
                                                   loraplus_lr_ratio=16)),
        "PEFT LoRA+": (theirs, create_loraplus_optimizer(theirs, torch.optim.AdamW, lr=1e-4,
                                                         loraplus_lr_ratio=16)),
        "loralab LoRA (one lr)": (plain, torch.optim.AdamW(
            [p for p in plain.parameters() if p.requires_grad], lr=1e-4)),
    }


def step(model: torch.nn.Module, opt: torch.optim.Optimizer, ids: torch.Tensor) -> float:
    t0 = time.perf_counter()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    runs = setups(args.d)
    ids = torch.randint(0, 512, (8, 128), generator=torch.Generator().manual_seed(0))
    for model, opt in runs.values():
        model.train()
        for _ in range(2):
            step(model, opt, ids)
    times: dict[str, list[float]] = {k: [] for k in runs}
    names = list(runs)
    for i in range(args.repeats):
        for k in names[i % len(names):] + names[:i % len(names)]:
            times[k].append(step(*runs[k], ids))
    ref = "PEFT LoRA+"
    print(f"d={args.d}, 4 layers, r=8 on 7 projections, 8×128 tokens, {args.threads} thread(s), "
          f"{args.repeats} repeats")
    print("| step | median ms | / PEFT LoRA+ (ratio of medians) | median of paired ratios |")
    print("|---|---|---|---|")
    for k in names:
        med = statistics.median(times[k])
        paired = statistics.median(a / b for a, b in zip(times[k], times[ref], strict=True))
        print(f"| {k} | {1e3 * med:.1f} | {med / statistics.median(times[ref]):.3f} | "
              f"{paired:.3f} |")


if __name__ == "__main__":
    main()

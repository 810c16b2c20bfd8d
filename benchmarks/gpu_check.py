"""One-GPU check: measured matmul peak, and full vs LoRA vs QLoRA steps of the tiny GPT.

Prints the device's bf16 and fp32 matmul peak (measured now, loralab.peak), then trains the
tiny GPT at a GPU-sized width (default d = 1024, 8 layers, 16 heads, T = 256, batch 32 =
8,192 tokens a step) with the real loop (:func:`loralab.lm.train.train`, bf16 autocast,
AdamW): full fine-tuning, LoRA r = 16 on attn+mlp, and QLoRA (the same LoRA over a
bitsandbytes NF4 base; skipped with a message when bitsandbytes cannot run on the device).
For each: median step time, tokens/s, achieved TFLOP/s against the measured bf16 peak,
peak memory, and the LoRA/full ratios. Run by ``benchmarks/gpu_check.sh``.

    .venv/bin/python benchmarks/gpu_check.py                    # CUDA, the GPU shape
    .venv/bin/python benchmarks/gpu_check.py --device cpu --small   # the code path, on a CPU
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from _peak import measure_peak, peak_line

from loralab.lm.corpus import build_data
from loralab.lm.model import ATTN_MODULES, MLP_MODULES, CharTokenizer, TinyLM, TinyLMConfig
from loralab.lm.train import TrainConfig, TrainResult, train

TARGETS = list(ATTN_MODULES + MLP_MODULES)


def _lora(model: TinyLM, r: int) -> TinyLM:
    from loralab.lora import AdapterConfig, inject_lora

    inject_lora(model, AdapterConfig(r=r, lora_alpha=2 * r, target_modules=TARGETS),
                generator=torch.Generator().manual_seed(0))
    return model


def _qlora(base: TinyLM, r: int, device: torch.device) -> TinyLM | str:
    """The NF4-based LoRA model on ``device``, or the reason it cannot be built here."""
    try:
        from loralab.lora.qlora import quantize_model

        model = copy.deepcopy(base).to(device)
        quantize_model(model, bits=4, compute_dtype=torch.bfloat16)
        model = _lora(model, r)
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
            model(torch.zeros(1, 8, dtype=torch.long, device=device))   # bnb kernels run?
        return model
    except Exception as exc:  # noqa: BLE001  (any bitsandbytes failure means: skip the row)
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _fl(x: float) -> str:
    """``1.23 T`` / ``45.6 G``: FLOPs or FLOP/s with a unit prefix."""
    return f"{x / 1e12:.2f} T" if x >= 1e12 else f"{x / 1e9:.2f} G"


def _row(label: str, res: TrainResult, ref: TrainResult | None, peak: float) -> str:
    achieved = res.flops_per_step / res.step_time_s
    ratio = f"{res.step_time_s / ref.step_time_s:.2f}x" if ref is not None else "1.00x"
    mem = res.peak_memory_bytes / 2**20
    return (f"| {label} | {res.trainable_params:,} | {1e3 * res.step_time_s:.1f} | {ratio} | "
            f"{res.tokens_per_s:,.0f} | {_fl(res.flops_per_step)} | "
            f"{_fl(achieved)} ({100 * achieved / peak:.0f}%) | {mem:,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--small", action="store_true",
                        help="a CPU-sized model (d=64, 2 layers, T=32, batch 8, 8 steps)")
    parser.add_argument("--steps", type=int, default=0, help="steps per run (default 30)")
    parser.add_argument("--rank", type=int, default=16)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device visible to torch")
    if args.small:
        d, layers, heads, block, batch, steps, n = 64, 2, 4, 32, 8, 8, 256
    else:
        d, layers, heads, block, batch, steps, n = 1024, 8, 16, 256, 32, 30, None
    steps = args.steps or steps
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, device {name}"
          + (f", CUDA {torch.version.cuda}, TF32 matmul "
             f"{'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}"
             if device.type == "cuda" else f", {torch.get_num_threads()} threads"))
    t0 = time.perf_counter()
    peaks = {dt: measure_peak(dt, str(device), n) for dt in (torch.bfloat16, torch.float32)}
    for dt, p in peaks.items():
        print(peak_line(p, dt, str(device), n))
    bf16_peak = peaks[torch.bfloat16]

    cfg = TinyLMConfig(d_model=d, n_layers=layers, n_heads=heads, block_size=block)
    base = TinyLM(cfg).requires_grad_(False)
    data = build_data("finetune", CharTokenizer(), block, n_train=max(1500, 12 * batch),
                      n_val=60)
    tc = TrainConfig(steps=steps, batch_size=batch, lr=1e-3, eval_every=10**6, eval_batches=1)
    print(f"\ntiny GPT d={d}, {layers} layers, {heads} heads, T={block}, batch {batch} "
          f"({batch * block:,} tokens/step), {base_params(base):,} parameters; bf16 autocast, "
          f"AdamW; median of steps 4..{steps}; % of the measured bf16 peak\n")
    print("| run | trainable | step ms | vs full | tokens/s | FLOP/step | FLOP/s (% of peak) "
          "| peak memory MiB |")
    print("|---|---|---|---|---|---|---|---|")

    def run(model: TinyLM) -> TrainResult:
        return train(model, data, tc, device=device, bf16=True, peak_flops=bf16_peak)

    full = run(copy.deepcopy(base).requires_grad_(True))
    print(_row("full fine-tuning", full, None, bf16_peak), flush=True)
    lora = run(_lora(copy.deepcopy(base), args.rank))
    print(_row(f"LoRA r={args.rank} attn+mlp", lora, full, bf16_peak), flush=True)
    q = _qlora(base, args.rank, device)
    if isinstance(q, str):
        print(f"| QLoRA r={args.rank} attn+mlp (NF4 base) | skipped: bitsandbytes cannot run "
              f"on {device.type} here ({q}) | | | | | | |")
    else:
        print(_row(f"QLoRA r={args.rank} attn+mlp (NF4 base)", run(q), full, bf16_peak))
    print(f"\nratios: LoRA / full step time {lora.step_time_s / full.step_time_s:.2f}x, "
          f"peak memory {lora.peak_memory_bytes / full.peak_memory_bytes:.2f}x "
          f"(memory: {full.peak_memory_kind}); wall {time.perf_counter() - t0:.0f} s")


def base_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":
    main()

"""Step time, optimizer state and memory of LoRA against full fine-tuning, across widths.

For each width d (a 4-layer TinyLM, d_ff = 4d, T = 64, batch 16 = 1,024 tokens a step) and
each method (full fine-tuning; LoRA r = 8 on attn; LoRA r = 8 on attn+mlp), the real
training loop (:func:`loralab.lm.train.train`) runs ``--steps`` steps; its median step time is
one sample. Methods and widths are interleaved and the order rotates every repeat, so machine
noise hits all alike; the table gives the median over ``--repeats`` and the LoRA/full ratio
of medians. It shows where LoRA's step gets cheaper than full fine-tuning's: at small width
the fixed per-op cost dominates (LoRA adds ops), at large width the skipped weight-gradient
GEMMs (1/3 of the FLOPs of each frozen layer) win.

With ``--experiment`` it also runs the fine-tuning experiment (``quick`` or ``default``
preset, base cached) and prints its targets table (val-loss gap, step-time ratio,
optimizer-state ratio, base vs both).

    .venv/bin/python benchmarks/bench_finetune.py [--widths 64,128,256,512] [--repeats 3]
        [--steps 12] [--threads 2] [--experiment default]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from loralab.experiment import RunSpec, parse_targets
from loralab.lm.corpus import build_data
from loralab.lm.model import CharTokenizer, TinyLM, TinyLMConfig
from loralab.lm.train import PEAK_FLOPS, TrainConfig, train

METHODS = ("full", "lora r=8 attn", "lora r=8 attn+mlp")


def _model(base: TinyLM, method: str) -> TinyLM:
    from loralab.lora import AdapterConfig, inject_lora

    model = copy.deepcopy(base)
    if method == "full":
        return model.requires_grad_(True)
    run = RunSpec("lora", 8, *parse_targets(method.split()[-1]))
    inject_lora(model, AdapterConfig(r=8, lora_alpha=16, target_modules=list(run.modules)),
                generator=torch.Generator().manual_seed(0))
    return model


def bench(widths: list[int], repeats: int, steps: int) -> None:
    data = build_data("finetune", CharTokenizer(), 64, n_train=1500, n_val=60)
    tc = TrainConfig(steps=steps, batch_size=16, lr=1e-3, eval_every=10**6, eval_batches=1)
    bases = {d: TinyLM(TinyLMConfig(d_model=d, n_layers=4, n_heads=4, block_size=64)).
             requires_grad_(False) for d in widths}
    times: dict[tuple[int, str], list[float]] = {}
    info: dict[tuple[int, str], object] = {}
    jobs = [(d, m) for d in widths for m in METHODS]
    for rep in range(repeats):
        k = rep % len(jobs)
        for d, m in jobs[k:] + jobs[:k]:
            res = train(_model(bases[d], m), data, tc)
            times.setdefault((d, m), []).append(res.step_time_s)
            info[(d, m)] = res
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{steps} steps x {repeats} repeats, 4 layers, T=64, batch 16 (1,024 tokens/step)\n")
    print("| d | params | full step ms | LoRA attn ms (ratio) | LoRA attn+mlp ms (ratio) | "
          "optimizer state full / LoRA attn+mlp | peak memory LoRA attn+mlp / full | "
          "GFLOP/s full / LoRA attn+mlp (% of 350) |")
    print("|---|---|---|---|---|---|---|---|")
    for d in widths:
        med = {m: statistics.median(times[(d, m)]) for m in METHODS}
        full, lora = info[(d, "full")], info[(d, METHODS[2])]
        print(f"| {d} | {full.total_params:,} | {1e3 * med['full']:.1f} | "
              f"{1e3 * med[METHODS[1]]:.1f} ({med[METHODS[1]] / med['full']:.2f}x) | "
              f"{1e3 * med[METHODS[2]]:.1f} ({med[METHODS[2]] / med['full']:.2f}x) | "
              f"{full.optimizer_state_bytes / lora.optimizer_state_bytes:.1f}x | "
              f"{lora.peak_memory_bytes / full.peak_memory_bytes:.2f}x | "
              f"{full.flops_per_step / med['full'] / 1e9:.0f} / "
              f"{lora.flops_per_step / med[METHODS[2]] / 1e9:.0f} "
              f"({100 * full.flops_per_step / med['full'] / PEAK_FLOPS:.0f}% / "
              f"{100 * lora.flops_per_step / med[METHODS[2]] / PEAK_FLOPS:.0f}%) |")


def experiment(preset: str) -> None:
    from loralab.experiment import ExperimentConfig, format_tables, run_experiment

    t0 = time.perf_counter()
    result = run_experiment(ExperimentConfig(preset=preset, device="cpu"))
    text = format_tables(result, markdown=True)
    start = text.index("### Targets")
    print(f"\n{preset} preset experiment ({time.perf_counter() - t0:.0f} s wall, base "
          f"{'cached' if result.base.cached else 'pretrained now'}):\n")
    print(text[start:text.index("Merge check")].strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", default="64,128,256,512")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--experiment", choices=("quick", "default"), default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench([int(w) for w in args.widths.split(",")], args.repeats, args.steps)
    if args.experiment:
        experiment(args.experiment)


if __name__ == "__main__":
    main()

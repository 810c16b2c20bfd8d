"""Threads or processes? Training throughput of the default preset's model three ways.

The same full fine-tuning step (a 4-layer d=128 TinyLM, 16 × 64 tokens, AdamW, clipping) is
timed in one run, the three layouts interleaved and rotated every repeat:

* ``1 process × 1 thread``: one run alone, one thread;
* ``1 process × T threads``: one run alone on every core (``T = --cores``);
* ``T processes × 1 thread``: ``T`` runs at once, one per core, each a fork of this process
  (``loralab.experiment.jobs.run_side_by_side``, what ``finetune --jobs`` uses).

It prints each layout's median step time (per process) and its throughput, steps per second
summed over the processes, as a ratio to one process on one thread; the matmul peak at one
and at ``T`` threads is measured first, in the same run.

    .venv/bin/python benchmarks/bench_jobs.py [--steps 40] [--repeats 3] [--cores 2] [--d 128]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _peak import measure_peak, peak_line
from torch import nn

from loralab.experiment.jobs import run_side_by_side
from loralab.lm.model import TinyLM, TinyLMConfig, lm_loss
from loralab.threads import cores, torch_threads


def _median_step(d: int, steps: int) -> float:
    """Median seconds of ``steps`` full fine-tuning steps (after 3 warm-up steps)."""
    cfg = TinyLMConfig(d_model=d, n_layers=4, n_heads=4, block_size=64)
    model = TinyLM(cfg, seed=0)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, cfg.vocab_size, (16, 64), generator=gen)
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3)
    times = []
    for i in range(steps + 3):
        t0 = time.perf_counter()
        lm_loss(model(x), x.roll(-1, 1)).backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _processes(n: int, d: int, steps: int) -> list[float]:
    """``n`` forked processes, one thread each, training at once: their median steps."""
    with tempfile.TemporaryDirectory() as tmp:
        def work(i: int, _progress: object) -> None:
            Path(tmp, f"{i}.json").write_text(json.dumps(_median_step(d, steps)))

        run_side_by_side(list(range(n)), work, jobs=n, threads=1)
        return [json.loads(Path(tmp, f"{i}.json").read_text()) for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cores", type=int, default=min(2, cores()))
    ap.add_argument("--d", type=int, default=128)
    args = ap.parse_args()
    t = args.cores
    print(f"torch {torch.__version__}, {cores()} cores here, d={args.d}, 4 layers, "
          f"16 x 64 tokens, {args.steps} steps x {args.repeats} repeats")
    for n in sorted({1, t}):
        with torch_threads(n):
            print(peak_line(measure_peak()))
    layouts = {"1 process x 1 thread": lambda: [_median_step(args.d, args.steps)],
               f"1 process x {t} threads": lambda: [_median_step(args.d, args.steps)],
               f"{t} processes x 1 thread": lambda: _processes(t, args.d, args.steps)}
    threads = {"1 process x 1 thread": 1, f"1 process x {t} threads": t,
               f"{t} processes x 1 thread": 1}
    samples: dict[str, list[list[float]]] = {k: [] for k in layouts}
    names = list(layouts)
    for rep in range(args.repeats):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            with torch_threads(threads[name]):
                samples[name].append(layouts[name]())
    ref = None
    print(f"\n{'layout':24s}  {'step ms (each process)':>24s}  {'steps/s':>8s}  {'vs 1x1':>7s}")
    for name in names:
        per = [statistics.median(s[i] for s in samples[name]) for i in range(len(samples[name][0]))]
        rate = sum(1 / p for p in per)
        ref = ref or rate
        steps = ", ".join(f"{1e3 * p:.1f}" for p in per)
        print(f"{name:24s}  {steps:>24s}  {rate:8.1f}  {rate / ref:6.2f}x")


if __name__ == "__main__":
    main()

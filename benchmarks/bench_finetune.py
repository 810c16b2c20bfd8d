"""Step time, utilisation, optimizer state and memory of LoRA against full fine-tuning.

For each width d (a 4-layer TinyLM, d_ff = 4d, T = 64, batch 16 = 1,024 tokens a step) and
each method (full fine-tuning; LoRA r = 8 on attn; LoRA r = 8 on attn+mlp), the real
training loop (:func:`loralab.lm.train.train`) runs ``--steps`` steps; its median step time is
one sample. Methods and widths are interleaved and the order rotates every repeat, so machine
noise hits all alike; the table gives the median over ``--repeats`` and the LoRA/full ratio
of medians. Utilisation is the analytic FLOPs of a step over its median time, against the
fp32 matmul peak measured at the start of this run at the same thread count (loralab.peak).

A second table checks the cost model (``cost_model.py``, docs/benchmarks.md): predicted
LoRA/full step-time ratio (the FLOP ratio, at equal utilisation) beside the measured one, and
predicted memory (weights + grads + AdamW state + saved activations) beside the measured
count. ``--profile D`` splits a step at width D into forward / backward / clipping /
optimizer and the forward+backward into GEMMs, attention and the rest (torch.profiler).

With ``--experiment`` it also runs the fine-tuning experiment (``quick`` or ``default``
preset, base cached) and prints its targets table.

    .venv/bin/python benchmarks/bench_finetune.py [--d 128,256,512,1024] [--repeats 3]
        [--steps 12] [--threads 1] [--profile 512] [--experiment default]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections import defaultdict

import cost_model as cm
import torch
from _peak import measure_peak, peak_line

from loralab.experiment import RunSpec, parse_targets
from loralab.lm.corpus import build_data
from loralab.lm.model import CharTokenizer, TinyLM, TinyLMConfig, lm_loss
from loralab.lm.train import TrainConfig, TrainResult, train, train_flops_per_step

METHODS = ("full", "lora r=8 attn", "lora r=8 attn+mlp")
DORA = "dora r=8 attn+mlp"      # with --dora: timed beside the others, checked in its own table
MiB = 2**20


def _model(base: TinyLM, method: str) -> TinyLM:
    from loralab.lora import AdapterConfig, inject_lora

    model = copy.deepcopy(base)
    if method == "full":
        return model.requires_grad_(True)
    run = RunSpec("lora", 8, *parse_targets(method.split()[-1]))
    inject_lora(model, AdapterConfig(r=8, lora_alpha=16, target_modules=list(run.modules),
                                     use_dora=method.startswith("dora")),
                generator=torch.Generator().manual_seed(0))
    return model


def _cm_method(method: str) -> cm.Method:
    if method == "full":
        return cm.Method()
    return cm.Method(method.split()[0], 8, parse_targets(method.split()[-1])[1])


def bench(widths: list[int], repeats: int, steps: int, layers: int, peak: float,
          methods: tuple[str, ...] = METHODS
          ) -> dict[tuple[int, str], tuple[float, TrainResult]]:
    """Median step time and the last TrainResult of every (width, method)."""
    data = build_data("finetune", CharTokenizer(), 64, n_train=1500, n_val=60)
    tc = TrainConfig(steps=steps, batch_size=16, lr=1e-3, eval_every=10**6, eval_batches=1)
    bases = {d: TinyLM(TinyLMConfig(d_model=d, n_layers=layers, n_heads=4, block_size=64)).
             requires_grad_(False) for d in widths}
    times: dict[tuple[int, str], list[float]] = defaultdict(list)
    info: dict[tuple[int, str], TrainResult] = {}
    jobs = [(d, m) for d in widths for m in methods]
    for rep in range(repeats):
        k = rep % len(jobs)
        for d, m in jobs[k:] + jobs[:k]:
            res = train(_model(bases[d], m), data, tc, peak_flops=peak)
            times[(d, m)].append(res.step_time_s)
            info[(d, m)] = res
    return {key: (statistics.median(ts), info[key]) for key, ts in times.items()}


def _pct(res: TrainResult, seconds: float, peak: float) -> str:
    achieved = res.flops_per_step / seconds
    return f"{achieved / 1e9:.0f} ({100 * achieved / peak:.0f}%)"


def print_speed(widths: list[int], rows: dict, peak: float) -> None:
    print("| d | params | full step ms | LoRA attn ms (ratio) | LoRA attn+mlp ms (ratio) | "
          "optimizer state full / LoRA attn+mlp | peak memory LoRA attn+mlp / full | "
          "GFLOP/s (% of measured peak): full / LoRA attn / LoRA attn+mlp |")
    print("|---|---|---|---|---|---|---|---|")
    for d in widths:
        (tf, full), (ta, attn), (tm, mlp) = (rows[(d, m)] for m in METHODS)
        print(f"| {d} | {full.total_params:,} | {1e3 * tf:.1f} | {1e3 * ta:.1f} ({ta / tf:.2f}x) "
              f"| {1e3 * tm:.1f} ({tm / tf:.2f}x) | "
              f"{full.optimizer_state_bytes / mlp.optimizer_state_bytes:.1f}x | "
              f"{mlp.peak_memory_bytes / full.peak_memory_bytes:.2f}x | "
              f"{_pct(full, tf, peak)} / {_pct(attn, ta, peak)} / {_pct(mlp, tm, peak)} |")


def _measured_parts(res: TrainResult) -> dict[str, float]:
    """The measured count split as the cost model splits it (fp32 everywhere)."""
    weights = 4 * res.total_params
    grads = 4 * res.trainable_params
    acts = res.peak_memory_bytes - weights - grads - res.optimizer_state_bytes
    return {"weights": weights, "grads": grads, "optimizer": res.optimizer_state_bytes,
            "activations": acts}


def print_model_check(widths: list[int], layers: int, rows: dict) -> None:
    print("\nCost model against the measured rows (predicted / measured; time ratio predicted "
          "= FLOP ratio; memory in MiB = weights + grads + AdamW state + saved activations)\n")
    print("| d | FLOPs/step full: model / train's count | LoRA attn / full time | "
          "LoRA attn+mlp / full time | memory full | memory LoRA attn+mlp | "
          "activations full | activations LoRA attn+mlp |")
    print("|---|---|---|---|---|---|---|---|")
    for d in widths:
        shape = cm.tiny(d, layers=layers)
        f_full = cm.step_flops(shape, cm.Method())
        (tf, full), (ta, _), (tm, mlp) = (rows[(d, m)] for m in METHODS)
        cells = [f"{f_full / 1e9:.2f} / {full.flops_per_step / 1e9:.2f} G"]
        for method, t in ((METHODS[1], ta), (METHODS[2], tm)):
            pred = cm.step_flops(shape, _cm_method(method)) / f_full
            cells.append(f"{pred:.2f} / {t / tf:.2f}")
        for res, method in ((full, "full"), (mlp, METHODS[2])):
            pred = sum(cm.memory_bytes(shape, _cm_method(method)).values())
            cells.append(f"{pred / MiB:.1f} / {res.peak_memory_bytes / MiB:.1f}")
        for res, method in ((full, "full"), (mlp, METHODS[2])):
            pred = cm.memory_bytes(shape, _cm_method(method))["activations"]
            cells.append(f"{pred / MiB:.1f} / {_measured_parts(res)['activations'] / MiB:.1f}")
        print(f"| {d} | " + " | ".join(cells) + " |")


def print_dora_check(widths: list[int], layers: int, rows: dict) -> None:
    print(f"\n{DORA} against the cost model (predicted / measured)\n")
    print("| d | DoRA / full time | DoRA / LoRA attn+mlp time | memory MiB | activations MiB |")
    print("|---|---|---|---|---|")
    for d in widths:
        shape = cm.tiny(d, layers=layers)
        (tf, _), (tl, _), (td, dora) = (rows[(d, m)] for m in ("full", METHODS[2], DORA))
        f = {m: cm.step_flops(shape, _cm_method(m)) for m in ("full", METHODS[2], DORA)}
        mem = cm.memory_bytes(shape, _cm_method(DORA))
        print(f"| {d} | {f[DORA] / f['full']:.2f} / {td / tf:.2f} | "
              f"{f[DORA] / f[METHODS[2]]:.2f} / {td / tl:.2f} | "
              f"{sum(mem.values()) / MiB:.1f} / {dora.peak_memory_bytes / MiB:.1f} | "
              f"{mem['activations'] / MiB:.1f} / "
              f"{_measured_parts(dora)['activations'] / MiB:.1f} |")


GEMM_OPS = {"aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm"}


def _phases(model: TinyLM, data, steps: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median ms of each phase of a hand-run step, and the self CPU ms per op category of
    the forward + backward (profiled over ``steps`` steps, per step)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    phases: dict[str, list[float]] = defaultdict(list)

    def step(i: int, record: bool) -> None:
        x, y = data.batch(i, 16, 0)
        marks = [time.perf_counter()]
        loss = lm_loss(model(x), y)
        marks.append(time.perf_counter())
        loss.backward()
        marks.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        marks.append(time.perf_counter())
        opt.step()
        marks.append(time.perf_counter())
        opt.zero_grad(set_to_none=True)
        marks.append(time.perf_counter())
        if record:
            for name, a, b in zip(("forward", "backward", "clip", "AdamW", "zero_grad"),
                                  marks, marks[1:], strict=False):
                phases[name].append(1e3 * (b - a))

    for i in range(3):
        step(i, False)
    for i in range(steps):
        step(i, True)
    cats: dict[str, float] = defaultdict(float)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            x, y = data.batch(i, 16, 0)
            lm_loss(model(x), y).backward()
            opt.zero_grad(set_to_none=True)
    for ev in prof.key_averages():
        name = ev.key
        cat = ("GEMM" if name in GEMM_OPS else
               "attention" if "attention" in name else "other ops")
        cats[cat] += ev.self_cpu_time_total / 1e3 / steps
    return {k: statistics.median(v) for k, v in phases.items()}, dict(cats)


def profile(d: int, layers: int, steps: int, peak: float) -> None:
    data = build_data("finetune", CharTokenizer(), 64, n_train=1500, n_val=60)
    base = TinyLM(TinyLMConfig(d_model=d, n_layers=layers, n_heads=4, block_size=64))
    base.requires_grad_(False)
    shape = cm.tiny(d, layers=layers)
    print(f"\nWhere the time of a step goes at d = {d} (median ms of {steps} hand-run steps; "
          "GEMM / attention / other: self CPU time of the forward + backward ops, "
          "torch.profiler, per step)\n")
    print("| method | forward | backward | clip | AdamW | zero_grad | step | GEMM ms "
          "(GFLOP/s, % of peak) | attention | other ops |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for method in (METHODS[0], METHODS[2]):
        model = _model(base, method).train()
        ph, cats = _phases(model, data, steps)
        flops = train_flops_per_step(model, 16, 64)
        gemm_flops = flops - 12.0 * shape.tokens * shape.seq * d * layers
        rate = gemm_flops / (cats.get("GEMM", float("nan")) / 1e3)
        print(f"| {method} | " + " | ".join(f"{ph[k]:.1f}" for k in
                                             ("forward", "backward", "clip", "AdamW",
                                              "zero_grad"))
              + f" | {sum(ph.values()):.1f} | {cats.get('GEMM', 0):.1f} ({rate / 1e9:.0f}, "
              f"{100 * rate / peak:.0f}%) | {cats.get('attention', 0):.1f} | "
              f"{cats.get('other ops', 0):.1f} |")


def experiment(preset: str) -> None:
    from loralab.experiment import ExperimentConfig, RunOptions, format_tables, run_experiment

    t0 = time.perf_counter()
    result = run_experiment(ExperimentConfig(preset=preset), RunOptions(device="cpu"))
    text = format_tables(result, markdown=True)
    start = text.index("### Targets")
    print(f"\n{preset} preset experiment ({time.perf_counter() - t0:.0f} s wall, base "
          f"{'cached' if result.base.cached else 'pretrained now'}):\n")
    print(text[start:text.index("Merge check")].strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--d", "--widths", dest="widths", default="64,128,256,512",
                        help="comma-separated widths (default 64,128,256,512)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--profile", type=int, default=0, metavar="D",
                        help="also split a step at width D into its parts (0: no)")
    parser.add_argument("--dora", action="store_true",
                        help=f"also time {DORA} and check it against the cost model")
    parser.add_argument("--no-bench", action="store_true", help="only --profile/--experiment")
    parser.add_argument("--experiment", choices=("quick", "default"), default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    widths = [int(w) for w in args.widths.split(",")]
    peak = measure_peak()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} steps x "
          f"{args.repeats} repeats, {args.layers} layers, T=64, batch 16 (1,024 tokens/step)")
    print(peak_line(peak) + "\n")
    if not args.no_bench:
        methods = METHODS + ((DORA,) if args.dora else ())
        rows = bench(widths, args.repeats, args.steps, args.layers, peak, methods)
        print_speed(widths, rows, peak)
        print_model_check(widths, args.layers, rows)
        if args.dora:
            print_dora_check(widths, args.layers, rows)
    if args.profile:
        profile(args.profile, args.layers, args.steps, peak)
    end = measure_peak()
    print(f"\n{peak_line(end, what='matmul peak measured again at the end')} "
          f"({end / peak:.2f}x the start's: the load changed by that much)")
    if args.experiment:
        experiment(args.experiment)


if __name__ == "__main__":
    main()

"""Speed of loralab's LoRALinear against PEFT's LoRA Linear and a plain frozen nn.Linear.

For each (tokens, d, r) with a square d x d base layer, in one process, interleaved (the order
rotates every repeat), median of repeats:

* train step: forward + backward of one layer, base frozen, input requiring grad (a layer in
  the middle of a network), grads cleared between steps, lora_dropout = 0 (and, ours vs
  PEFT only, lora_dropout = 0.1);
* inference (torch.inference_mode, forward only, 3x the repeats): the merged LoRALinear,
  the unloaded nn.Linear and the unmerged LoRALinear / PEFT layer against the plain
  nn.Linear (the unloaded layer *is* a plain nn.Linear: its ratio shows the noise level).

Then the other layer types against PEFT's layer for them, train step only: GPT-2's
``Conv1D`` (``fan_in_fan_out``; loralab runs it through the same fused path as Linear),
``nn.Embedding`` (a vocabulary of ``--vocab`` tokens), a DoRA ``nn.Linear``, and QLoRA: a
bitsandbytes NF4 ``Linear4bit`` base against PEFT's bitsandbytes LoRA layer and a float LoRA
step on the same weights, with the base's bits per weight measured from its tensors.

Before timing, the outputs and gradients of ours and PEFT's are checked to agree.
Prints a markdown table: median ms, ratio of medians and the median of the per-repeat
(paired) ratios; achieved GFLOP/s of the plain layer's matmuls is shown against the fp32
matmul peak measured at the start of the same run (loralab.peak: n = 1024, the same thread
count, best of 10; wall clock, so the percentage is printed for ``--clock wall`` only).

    .venv/bin/python benchmarks/bench_layer.py [--repeats 9] [--threads 2]
        [--shapes 2048,1024,8 2048,4096,16] [--clock wall|process] [--kinds linear conv1d
        embedding]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
from _peak import measure_peak, peak_line
from peft import LoraConfig
from peft.tuners.lora import Embedding as PeftEmbedding
from peft.tuners.lora import Linear as PeftLinear
from torch import nn

from loralab.lora import LoRAEmbedding, LoRALinear

PEAK_GFLOPS = float("nan")   # measured in main(), before any timing (loralab.peak)


def make_layers(d: int, r: int, seed: int) -> dict[str, nn.Module]:
    gen = torch.Generator().manual_seed(seed)
    base = nn.Linear(d, d)
    with torch.no_grad():
        base.weight.copy_(torch.randn(d, d, generator=gen) / d**0.5)
        base.bias.copy_(torch.randn(d, generator=gen))
    base.requires_grad_(False)
    ours = LoRALinear(copy.deepcopy(base), r, lora_alpha=2 * r, generator=gen)
    with torch.no_grad():
        ours.lora_B["default"].weight.copy_(torch.randn(d, r, generator=gen) / r)
    cfg = LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0)
    peft = PeftLinear(copy.deepcopy(base), "default", config=cfg, r=r, lora_alpha=2 * r)
    with torch.no_grad():
        peft.lora_A["default"].weight.copy_(ours.lora_A["default"].weight)
        peft.lora_B["default"].weight.copy_(ours.lora_B["default"].weight)
    return {"loralab LoRALinear": ours, "PEFT lora.Linear": peft, "plain nn.Linear": base}


def train_step(mod: nn.Module, x: torch.Tensor, gy: torch.Tensor) -> None:
    x.grad = None
    for p in mod.parameters():
        p.grad = None
    mod(x).backward(gy)


def check_agree(layers: dict[str, nn.Module], x: torch.Tensor, gy: torch.Tensor) -> None:
    ours, peft = layers["loralab LoRALinear"], layers["PEFT lora.Linear"]
    train_step(ours, x, gy)
    gx_ours = x.grad.clone()
    train_step(peft, x, gy)
    pairs = [(ours(x), peft(x)), (gx_ours, x.grad),
             (ours.lora_A["default"].weight.grad, peft.lora_A["default"].weight.grad),
             (ours.lora_B["default"].weight.grad, peft.lora_B["default"].weight.grad)]
    for a, b in pairs:      # fp32 sums of 2,048 products: rounding scales with the size
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.detach().abs().max()))


CLOCK = time.perf_counter  # --clock process: CPU time of this process (all its threads)


def timed(fn: Callable[[], object]) -> float:
    t0 = CLOCK()
    fn()
    return CLOCK() - t0


def interleave(cases: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    names = list(cases)
    for name in names:  # warm-up
        cases[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(repeats):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            times[name].append(timed(cases[name]))
    return times


def rows(times: dict[str, list[float]], ref: str, ref2: str | None = None) -> list[str]:
    med = {n: statistics.median(t) for n, t in times.items()}
    out = []
    for name, ts in times.items():
        cells = [name, f"{med[name] * 1e3:.1f}"]
        for r in (ref, ref2):
            if r is None:
                continue
            paired = statistics.median(a / b for a, b in zip(ts, times[r], strict=True))
            cells.append(f"{med[name] / med[r]:.3f} ({paired:.3f})")
        out.append("| " + " | ".join(cells) + " |")
    return out


def bench_shape(n: int, d: int, r: int, repeats: int) -> list[str]:
    layers = make_layers(d, r, seed=0)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, d, generator=gen).requires_grad_(True)
    gy = torch.randn(n, d, generator=gen)
    check_agree(layers, x, gy)
    out = [f"\n### (tokens, d, r) = ({n}, {d}, {r}): training step (forward + backward)\n",
           "| layer | median ms | vs PEFT (paired) | vs plain (paired) |", "|---|---|---|---|"]
    times = interleave({k: (lambda m=m: train_step(m, x, gy)) for k, m in layers.items()},
                       repeats)
    out += rows(times, "PEFT lora.Linear", "plain nn.Linear")
    plain_ms = statistics.median(times["plain nn.Linear"])
    gflop = 2 * 2 * n * d * d / 1e9  # forward x Wᵀ and backward gy W
    pct = (f"{100 * gflop / plain_ms / PEAK_GFLOPS:.0f}% of the {PEAK_GFLOPS:.0f} GFLOP/s "
           "peak measured at the start" if CLOCK is time.perf_counter else
           "process clock: CPU time of all threads, not comparable with the wall-clock peak")
    out.append(f"\nplain layer: {gflop / plain_ms:.0f} GFLOP/s achieved ({pct})")

    drop = {"loralab, dropout 0.1": copy.deepcopy(layers["loralab LoRALinear"]),
            "PEFT, dropout 0.1": copy.deepcopy(layers["PEFT lora.Linear"])}
    drop["loralab, dropout 0.1"].set_dropout("default", 0.1)
    drop["PEFT, dropout 0.1"].lora_dropout["default"] = nn.Dropout(0.1)
    out += [f"\n### ({n}, {d}, {r}): training step with lora_dropout = 0.1\n",
            "| layer | median ms | vs PEFT (paired) |", "|---|---|---|"]
    out += rows(interleave({k: (lambda m=m: train_step(m, x, gy)) for k, m in drop.items()},
                           repeats), "PEFT, dropout 0.1")

    ours = layers["loralab LoRALinear"]
    merged = copy.deepcopy(ours)
    merged.merge()
    unloaded = copy.deepcopy(merged).base
    plain = layers["plain nn.Linear"]
    xi = x.detach()
    torch.testing.assert_close(merged(xi), ours(xi), rtol=1e-4, atol=1e-4)
    cases = {"plain nn.Linear": plain, "loralab merged": merged, "loralab unloaded": unloaded,
             "loralab unmerged": ours, "PEFT unmerged": layers["PEFT lora.Linear"]}

    def infer(m: nn.Module) -> None:
        with torch.inference_mode():
            m(xi)

    out += [f"\n### ({n}, {d}, {r}): inference (forward only)\n",
            "| layer | median ms | vs plain (paired) |", "|---|---|---|"]
    out += rows(interleave({k: (lambda m=m: infer(m)) for k, m in cases.items()},
                           3 * repeats), "plain nn.Linear")
    return out


def make_other(kind: str, n: int, d: int, r: int, vocab: int, seed: int
               ) -> tuple[dict[str, nn.Module], torch.Tensor]:
    """ours / PEFT / plain for a Conv1D (d x d) or an Embedding (vocab x d), and the input."""
    gen = torch.Generator().manual_seed(seed)
    if kind == "conv1d":
        from transformers.pytorch_utils import Conv1D

        base = Conv1D(d, d)
        with torch.no_grad():
            base.weight.copy_(torch.randn(d, d, generator=gen) / d**0.5)
        base.requires_grad_(False)        # frozen before the copies: PEFT's layer keeps it so
        x = torch.randn(n, d, generator=gen).requires_grad_(True)
        cfg = LoraConfig(r=r, lora_alpha=2 * r, fan_in_fan_out=True)
        peft = PeftLinear(copy.deepcopy(base), "default", config=cfg, r=r, lora_alpha=2 * r,
                          fan_in_fan_out=True)
        ours = LoRALinear(copy.deepcopy(base), r, lora_alpha=2 * r, generator=gen)
        pa, pb = peft.lora_A["default"].weight, peft.lora_B["default"].weight
        oa, ob = ours.lora_A["default"].weight, ours.lora_B["default"].weight
    elif kind == "qlora":              # the same NF4 base under both; float32 factors
        from peft.tuners.lora.bnb import Linear4bit as PeftLinear4bit

        from loralab.lora.qlora import quantize_model

        lin = nn.Linear(d, d)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(d, d, generator=gen) / d**0.5)
        holder = nn.Sequential(lin)
        quantize_model(holder, bits=4)
        base = holder[0].requires_grad_(False)
        x = torch.randn(n, d, generator=gen).requires_grad_(True)
        cfg = LoraConfig(r=r, lora_alpha=2 * r)
        peft = PeftLinear4bit(copy.deepcopy(base), "default", config=cfg, r=r, lora_alpha=2 * r)
        ours = LoRALinear(copy.deepcopy(base), r, lora_alpha=2 * r, generator=gen)
        pa, pb = peft.lora_A["default"].weight, peft.lora_B["default"].weight
        oa, ob = ours.factors()
    elif kind == "dora":
        base = nn.Linear(d, d)
        with torch.no_grad():
            base.weight.copy_(torch.randn(d, d, generator=gen) / d**0.5)
        base.requires_grad_(False)
        x = torch.randn(n, d, generator=gen).requires_grad_(True)
        cfg = LoraConfig(r=r, lora_alpha=2 * r, use_dora=True)
        peft = PeftLinear(copy.deepcopy(base), "default", config=cfg, r=r, lora_alpha=2 * r)
        ours = LoRALinear(copy.deepcopy(base), r, lora_alpha=2 * r, generator=gen, use_dora=True)
        pa, pb = peft.lora_A["default"].weight, peft.lora_B["default"].weight
        oa, ob = ours.factors()
    else:
        base = nn.Embedding(vocab, d).requires_grad_(False)
        x = torch.randint(0, vocab, (n,), generator=gen)
        cfg = LoraConfig(r=r, lora_alpha=2 * r)
        peft = PeftEmbedding(copy.deepcopy(base), "default", config=cfg, r=r, lora_alpha=2 * r)
        ours = LoRAEmbedding(copy.deepcopy(base), r, lora_alpha=2 * r, generator=gen)
        pa, pb = peft.lora_embedding_A["default"], peft.lora_embedding_B["default"]
        oa, ob = ours.lora_embedding_A["default"], ours.lora_embedding_B["default"]
    with torch.no_grad():
        oa.normal_(generator=gen)
        ob.normal_(generator=gen)
        pa.copy_(oa)
        pb.copy_(ob)
    torch.testing.assert_close(ours(x), peft(x), rtol=1e-4, atol=1e-4)
    names = {"conv1d": "Conv1D", "embedding": "nn.Embedding", "dora": "nn.Linear",
             "qlora": "Linear4bit"}
    return ({f"loralab {kind}": ours, f"PEFT {kind}": peft, f"plain {names[kind]}": base}, x)


def bench_other(kind: str, n: int, d: int, r: int, vocab: int, repeats: int) -> list[str]:
    layers, x = make_other(kind, n, d, r, vocab, seed=0)
    gy = torch.randn(n, d, generator=torch.Generator().manual_seed(1))

    def step(m: nn.Module) -> None:
        if x.requires_grad:
            x.grad = None
        for p in m.parameters():
            p.grad = None
        out = m(x)
        if out.requires_grad:
            out.backward(gy)

    shape = f"vocab {vocab}, d {d}" if kind == "embedding" else f"d {d}"
    out = [f"\n### {kind}: (tokens, {shape}, r) = ({n}, {r}): training step\n",
           "| layer | median ms | vs PEFT (paired) |", "|---|---|---|"]
    if kind == "qlora":               # beside a float LoRA step on the same (float) weight
        from loralab.lora.qlora import base_weight_bytes, dequantized_weight

        float_base = nn.Linear(d, d).requires_grad_(False)
        with torch.no_grad():
            float_base.weight.copy_(dequantized_weight(layers["plain Linear4bit"]))
        layers["loralab float LoRA"] = LoRALinear(float_base, r, lora_alpha=2 * r)
        nbytes = base_weight_bytes(nn.Sequential(layers["plain Linear4bit"]))
        out[0] += f"base: {8 * nbytes / (d * d):.3f} bits per weight (NF4, blocks of 64)\n"
    times = interleave({k: (lambda m=m: step(m)) for k, m in layers.items()}, repeats)
    return out + rows(times, f"PEFT {kind}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shapes", nargs="+", default=["2048,1024,8", "2048,4096,16"],
                        help="tokens,d,r triples")
    parser.add_argument("--clock", choices=["wall", "process"], default="wall",
                        help="wall time (default), or this process's CPU time, which other "
                             "programs on a shared machine disturb less")
    parser.add_argument("--kinds", nargs="+",
                        default=["linear", "conv1d", "embedding", "dora", "qlora"],
                        choices=["linear", "conv1d", "embedding", "dora", "qlora"])
    parser.add_argument("--vocab", type=int, default=32_000)
    args = parser.parse_args()
    global CLOCK, PEAK_GFLOPS
    CLOCK = time.perf_counter if args.clock == "wall" else time.process_time
    torch.set_num_threads(args.threads)
    import peft

    peak = measure_peak()
    PEAK_GFLOPS = peak / 1e9
    print(f"torch {torch.__version__}, peft {peft.__version__}, {args.threads} threads, fp32, "
          f"{args.clock} clock, median of {args.repeats} interleaved repeats; ratio of "
          f"medians (median of paired per-repeat ratios)\n{peak_line(peak)}")
    for shape in args.shapes:
        n, d, r = (int(v) for v in shape.split(","))
        if "linear" in args.kinds:
            print("\n".join(bench_shape(n, d, r, args.repeats)))
        for kind in ("conv1d", "embedding", "dora", "qlora"):
            if kind in args.kinds:
                print("\n".join(bench_other(kind, n, d, r, args.vocab, args.repeats)))


if __name__ == "__main__":
    main()

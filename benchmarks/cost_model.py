"""Cost model of one training step: FLOPs and memory of full fine-tuning, LoRA and DoRA.

The formulas of docs/benchmarks.md ("Cost model"), as code: ``bench_finetune.py`` prints them
beside its measured rows (d = 128 ... 1024 on the tiny LM), and this script prints the
default preset's FLOP fractions (the physical floor of LoRA's step) and the 7B table.

    .venv/bin/python benchmarks/cost_model.py            # preset fractions + Llama-2-7B table

Notation: n = B·T tokens a step; every weight matrix W: (d_out, d_in). Per matrix and step:
forward 2·n·d_in·d_out FLOPs, input gradient the same, weight gradient the same again only
when W trains. Attention scores (Q Kᵀ, A V): 4·n·T·d forward per layer, twice that backward
(causal masking not discounted, as loralab.lm.train counts). LoRA adds 6·n·r·(d_in + d_out)
per wrapped matrix; DoRA adds, once a step, ‖W0 + s·B A‖ per row: 2·r·d_in·d_out + 3·d_in·d_out.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("up_proj", "down_proj")
GATED_MLP = ("gate_proj", "up_proj", "down_proj")
GiB = 2**30


@dataclass(frozen=True)
class Shape:
    """A decoder-only transformer and the tokens of one step.

    ``gated``: a SwiGLU MLP (gate, up, down; Llama) instead of GELU (up, down; the tiny LM).
    ``tied``: the head shares the embedding's weight.
    """

    d: int
    layers: int
    d_ff: int
    vocab: int
    heads: int
    seq: int
    batch: int
    gated: bool = False
    tied: bool = False

    @property
    def tokens(self) -> int:
        return self.batch * self.seq

    def matrices(self) -> dict[str, tuple[int, int]]:
        """Each block's weight matrices, name -> (d_in, d_out)."""
        d, f = self.d, self.d_ff
        out = {name: (d, d) for name in ATTN}
        if self.gated:
            out.update(gate_proj=(d, f), up_proj=(d, f), down_proj=(f, d))
        else:
            out.update(up_proj=(d, f), down_proj=(f, d))
        return out

    def params(self) -> int:
        """All parameters (norm weights and biases counted; the tiny LM's LayerNorms have
        both, position embeddings as the tiny LM's)."""
        block = sum(i * o for i, o in self.matrices().values())
        norms = (2 if self.gated else 4) * self.d           # RMSNorm: weight; LayerNorm: w, b
        emb = self.vocab * self.d + (0 if self.gated else self.seq * self.d)
        head = 0 if self.tied else self.vocab * self.d
        return self.layers * (block + norms) + emb + head + (1 if self.gated else 2) * self.d


@dataclass(frozen=True)
class Method:
    """``full``, or ``lora`` / ``dora`` at rank ``r`` on the block matrices named in
    ``targets`` (the base, embeddings and head frozen)."""

    kind: str = "full"
    r: int = 0
    targets: tuple[str, ...] = field(default_factory=tuple)

    def wrapped(self, shape: Shape) -> dict[str, tuple[int, int]]:
        if self.kind == "full":
            return {}
        return {k: v for k, v in shape.matrices().items() if k in self.targets}


def trainable_params(shape: Shape, m: Method) -> int:
    """Full: every parameter. LoRA: r·(d_in + d_out) per wrapped matrix; DoRA adds d_out."""
    if m.kind == "full":
        return shape.params()
    per = sum(m.r * (i + o) + (o if m.kind == "dora" else 0)
              for i, o in m.wrapped(shape).values())
    return shape.layers * per


def step_flops(shape: Shape, m: Method) -> float:
    """FLOPs of one forward + backward (the optimizer's O(params) work not counted)."""
    n, full = shape.tokens, m.kind == "full"
    per_block = sum(2.0 * n * i * o * (3 if full else 2) for i, o in shape.matrices().values())
    per_block += 12.0 * n * shape.seq * shape.d                    # Q Kᵀ, A V and backward
    for i, o in m.wrapped(shape).values():
        per_block += 6.0 * n * m.r * (i + o)
        if m.kind == "dora":
            per_block += 2.0 * m.r * i * o + 3.0 * i * o
    head = 2.0 * n * shape.d * shape.vocab * (3 if full else 2)
    return shape.layers * per_block + head


def activations_per_token(shape: Shape, m: Method) -> tuple[float, float]:
    """Elements autograd saves for backward per token: ``(per block, head)``.

    Per block, tiny LM (LayerNorm, GELU, SDPA): the norm inputs (2d), Q, K, V and the
    attention output (4d), the GELU input (d_ff), the norms' mean and 1/std (4) and the
    attention's log-sum-exp (heads); and the input of every matrix whose weight gradient is
    needed: ln1 out (d, for q/k/v), ln2 out (d, for up), GELU out (d_ff, for down), plus
    h = x Aᵀ (r) per LoRA matrix (DoRA: also the base and low-rank outputs, 2·d_out, for the
    magnitude's gradient). o_proj's input is the attention output itself (flash attention
    returns it in (B, T, h, d_h) layout, so the reshape is a view: no second copy).
    Llama (RMSNorm, SwiGLU, flash attention): the same with the gate, up and silu(gate)
    outputs (3·d_ff) in place of the GELU input, the product (d_ff) as down's input, and one
    1/rms per norm. Head: ln_f in (d), ln_f out (d, if the head trains), log-probs (V).
    """
    d, f = shape.d, shape.d_ff
    wrapped = m.wrapped(shape)
    trains = (lambda name: True) if m.kind == "full" else (lambda name: name in wrapped)
    per = 2 * d + 4 * d + (3 * f if shape.gated else f) + (2 if shape.gated else 4)
    per += shape.heads
    inputs = {"q_proj": d, "o_proj": 0, "up_proj": d, "down_proj": f}
    groups = {"q_proj": ("q_proj", "k_proj", "v_proj"), "o_proj": ("o_proj",),
              "up_proj": ("gate_proj", "up_proj") if shape.gated else ("up_proj",),
              "down_proj": ("down_proj",)}
    per += sum(size for key, size in inputs.items() if any(trains(g) for g in groups[key]))
    per += sum(m.r + (2 * o if m.kind == "dora" else 0) for _, o in wrapped.values())
    head = d + (d if m.kind == "full" else 0) + shape.vocab + 2
    if m.kind != "full":          # frozen embeddings: block 1's first norm is not recorded
        head -= d + (1 if shape.gated else 2)
    return per, head


def activation_bytes(shape: Shape, m: Method, act: float = 4,
                     checkpointing: bool = False) -> float:
    """Saved activations of one step, ``act`` bytes each, plus the int64 token ids and
    targets (16 bytes a token). ``checkpointing``: each block keeps only its input (d a
    token) and one block's activations are recomputed at a time."""
    per, head = activations_per_token(shape, m)
    blocks = shape.layers * shape.d + per if checkpointing else shape.layers * per
    return shape.tokens * ((blocks + head) * act + 16)


def memory_bytes(shape: Shape, m: Method, *, weight: float = 4, act: float = 4,
                 grad: float = 4, optim: float = 8, master: float = 0,
                 frozen_weight: float | None = None, checkpointing: bool = False
                 ) -> dict[str, float]:
    """Bytes of weights, gradients, optimizer state and activations of one step.

    ``weight``: bytes per trainable weight; ``frozen_weight``: per frozen one (the base;
    default ``weight``; NF4 = 4.5/8); ``grad``, ``optim`` (AdamW: two fp32 moments = 8),
    ``master`` (an fp32 master copy in mixed precision = 4) per trainable parameter;
    ``act`` bytes per saved activation.
    """
    p_train = trainable_params(shape, m)
    frozen = shape.params() if m.kind != "full" else 0
    fw = weight if frozen_weight is None else frozen_weight
    return {"weights": frozen * fw + p_train * (weight + master), "grads": p_train * grad,
            "optimizer": p_train * optim,
            "activations": activation_bytes(shape, m, act, checkpointing)}


def tiny(d: int, layers: int = 4, seq: int = 64, batch: int = 16, vocab: int = 78) -> Shape:
    """The tiny LM of bench_finetune / the default preset (d_ff = 4d, 4 heads)."""
    return Shape(d=d, layers=layers, d_ff=4 * d, vocab=vocab, heads=4, seq=seq, batch=batch)


LLAMA2_7B = Shape(d=4096, layers=32, d_ff=11008, vocab=32000, heads=32, seq=2048, batch=1,
                  gated=True)
ALL_LINEAR = ATTN + GATED_MLP


def preset_fractions(r: int = 8) -> list[str]:
    """LoRA's FLOPs as a fraction of full fine-tuning's at the default preset."""
    s = tiny(128)
    full = step_flops(s, Method())
    lines = [f"default preset (d = 128, 4 layers, T = 64, batch 16, V = {s.vocab}): full step "
             f"{full / 1e9:.2f} GFLOP"]
    skip = 2.0 * s.tokens * 3 * s.d * s.d       # block 1's q/k/v input gradient (see below)
    for label, targets in (("attn", ATTN), ("attn+mlp", ATTN + MLP)):
        lora = step_flops(s, Method("lora", r, targets))
        lines.append(f"  LoRA r = {r} on {label:<8}: {lora / full:.3f} of full's FLOPs "
                     f"({(lora - skip) / full:.3f} without block 1's q/k/v input gradient, "
                     "which a frozen embedding does not need)")
    return lines


def _row(label: str, parts: dict[str, float], caps: tuple[float, ...],
         overhead: float) -> str:
    total = sum(parts.values()) + overhead
    fits = " | ".join("no" if total > c else "tight" if total > 0.9 * c else "yes"
                      for c in caps)
    cells = " | ".join(f"{parts[k] / GiB:.1f}" for k in ("weights", "grads", "optimizer",
                                                          "activations"))
    return f"| {label} | {cells} | {total / GiB:.1f} | {fits} |"


def seven_b_table(overhead: float = 2 * GiB) -> list[str]:
    """What fits on one 24 GiB / 80 GiB GPU: Llama-2-7B, 2,048 tokens a step (batch 1)."""
    s = LLAMA2_7B
    q_v, caps = ("q_proj", "v_proj"), (24 * GiB, 80 * GiB)
    nf4 = 4.5 / 8
    rows = [f"Llama-2-7B shape: {s.params() / 1e9:.2f} B parameters, {s.tokens:,} tokens/step; "
            f"GiB; total includes {overhead / GiB:.0f} GiB for the CUDA context and allocator "
            "slack", "",
            "| method | weights | grads | AdamW state | activations | total | 24 GiB | 80 GiB |",
            "|---|---|---|---|---|---|---|---|"]
    for ckpt in (False, True):
        tag = ", checkpointing" if ckpt else ""
        cases = [
            ("full, fp32 AdamW", Method(), dict(weight=4, act=4, grad=4, optim=8)),
            ("full, bf16 mixed (fp32 master + moments)", Method(),
             dict(weight=2, act=2, grad=2, optim=8, master=4)),
            ("full, pure bf16 (bf16 moments, no master)", Method(),
             dict(weight=2, act=2, grad=2, optim=4)),
        ]
        for r in (8, 16):
            for tl, targets in (("q,v", q_v), ("all-linear", ALL_LINEAR)):
                cases.append((f"LoRA r={r} {tl}, bf16 base", Method("lora", r, targets),
                              dict(weight=4, act=2, grad=4, optim=8, frozen_weight=2)))
        cases.append(("QLoRA r=16 all-linear, NF4 base", Method("lora", 16, ALL_LINEAR),
                      dict(weight=4, act=2, grad=4, optim=8, frozen_weight=nf4)))
        for label, m, kw in cases:
            parts = memory_bytes(s, m, checkpointing=ckpt, **kw)
            if label.startswith("QLoRA"):     # embeddings and head stay bf16 (not quantized)
                parts["weights"] += 2 * s.vocab * s.d * (2 - nf4)
            rows.append(_row(label + tag, parts, caps, overhead))
    return rows


def seven_b_flops() -> list[str]:
    """FLOPs of one 2,048-token step of the 7B shape, full and LoRA."""
    s = LLAMA2_7B
    full = step_flops(s, Method())
    out = [f"Llama-2-7B, {s.tokens:,} tokens a step: full fine-tuning {full / 1e12:.1f} TFLOP"]
    for r, label, targets in ((8, "q,v", ("q_proj", "v_proj")), (16, "all-linear", ALL_LINEAR)):
        for kind in ("lora", "dora"):
            f = step_flops(s, Method(kind, r, targets))
            out.append(f"  {kind} r={r} {label}: {f / 1e12:.1f} TFLOP ({f / full:.3f} of full)")
    return out


def preset_work(runs: list[Method], pretrain: tuple[int, int], finetune: tuple[int, int],
                val_windows: dict[str, int], d: int = 128) -> dict[str, float]:
    """FLOPs of a whole sweep of the tiny LM at width ``d``, by part: ``pretraining``, ``runs``
    and ``evaluation``. ``pretrain`` / ``finetune``: ``(steps, eval_every)`` of the two
    schedules (every run evaluates once before its first step too); ``val_windows``: 64-token
    val windows of the ``pretrain`` and ``finetune`` texts. Steps are :func:`step_flops`; a
    forward is a third of a full step."""
    s = tiny(d)
    full = step_flops(s, Method())
    fwd_per_token = full / 3 / s.tokens
    (p_steps, p_every), (f_steps, f_every) = pretrain, finetune
    evals = ((p_steps // p_every + 1) * val_windows["pretrain"]
             + len(runs) * (f_steps // f_every + 1) * val_windows["finetune"]) * s.seq
    return {"pretraining": p_steps * full,
            "runs": sum(f_steps * step_flops(s, m) for m in runs),
            "evaluation": evals * fwd_per_token}


def default_sweep() -> tuple[list[Method], tuple[int, int], tuple[int, int],
                             dict[str, int]]:
    """The default preset's sweep read from loralab (``PRESETS``, ``plan_runs``): its runs,
    ``(steps, eval_every)`` of pretraining and of fine-tuning, and the val windows."""
    from loralab.experiment import PRESETS, ExperimentConfig, plan_runs
    from loralab.lm.corpus import build_data
    from loralab.lm.model import CharTokenizer

    spec, tok = PRESETS["default"], CharTokenizer()
    t = spec.model.block_size
    runs = [Method() if r.method == "full" else Method("lora", r.rank, r.modules)
            for r in plan_runs(ExperimentConfig(preset="default"))]
    windows = {task: (len(build_data(task, tok, t, n_train=100, n_val=spec.n_val_lines).val)
                      - 1) // t for task in ("pretrain", "finetune")}
    assert spec.full.steps == spec.lora.steps and spec.full.eval_every == spec.lora.eval_every
    return (runs, (spec.pretrain.steps, spec.pretrain.eval_every),
            (spec.lora.steps, spec.lora.eval_every), windows)


def preset_floor(work: dict[str, float], peak_per_core: float, cores: int) -> list[str]:
    """The least wall time the sweep's FLOPs ``work`` (:func:`preset_work`) allow at
    ``cores`` × ``peak_per_core`` (every core at the matmul peak the whole time)."""
    total = sum(work.values())
    rate = cores * peak_per_core
    parts = ", ".join(f"{k} {v / 1e12:.2f}" for k, v in work.items())
    return [f"default preset, whole sweep: {total / 1e12:.2f} TFLOP ({parts})",
            f"  at {cores} x {peak_per_core / 1e9:.1f} GFLOP/s (the matmul peak measured now, "
            f"one thread): >= {total / rate:.0f} s of wall time; the 90 s target needs "
            f">= {total / 90 / cores / 1e9:.0f} GFLOP/s a core sustained"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--floor", action="store_true",
                    help="also measure the one-thread matmul peak and print the default "
                         "preset's least wall time on --cores cores")
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    if args.floor:
        import torch
        from _peak import measure_peak, peak_line

        runs, pretrain, finetune, windows = default_sweep()
        torch.set_num_threads(1)
        peak = measure_peak()
        print(peak_line(peak))
        print(f"val windows of 64 tokens: {windows}; {len(runs)} runs")
        work = preset_work(runs, pretrain, finetune, windows)
        print("\n".join(preset_floor(work, peak, args.cores)))
        print()
    print("\n".join(preset_fractions()))
    print()
    print("\n".join(seven_b_flops()))
    print()
    print("\n".join(seven_b_table()))


if __name__ == "__main__":
    main()

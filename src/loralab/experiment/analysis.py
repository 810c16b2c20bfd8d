"""What the fine-tuning runs mean: checks, the bridge to the SVD, samples, the targets.

* **Merge check**: for every LoRA run, the merged model ``W0 + (α/r)·B A`` gives the same
  logits (max |Δ| over a val batch, fp32; target 1e-5) and val loss as the unmerged one; the
  adapter saved with ``save_adapter`` and loaded into a fresh base gives them too. Beside it:
  the same comparison in fp64 (the identity itself, ~1e-14) and fp32's own error on these
  logits (unmerged fp32 against fp64), the noise level an fp32 difference is measured against.
* **Spectrum of ΔW_full** = W_full-FT − W0 for every targeted layer: singular values
  σ_1 ≥ σ_2 ≥ …, and the smallest rank holding 90 % of the energy Σσ_i².
* **Truncation**: val loss of the base with ``W0 + [ΔW_full]_r`` (best rank-r approximation,
  Eckart–Young) on the target layers, beside LoRA trained at rank r on the same layers.
* **Amplification** (LoRA paper, §7.3): for one layer, with U, V the top-r left/right
  singular vectors of ΔW, the factor ``‖ΔW‖_F / ‖Uᵀ W0 V‖_F``; beside ``‖Uᵀ W0 V‖_F`` for
  W0's own top-r directions and for random ones.
* **rsLoRA**: final val loss with scale α/r against α/√r at the same rank.
* **Samples**: continuations of Pig Latin prompts by the base, full FT and LoRA (sampled at
  temperature 0.5 with a fixed seed per prompt), each read back into English, and the share
  of valid Pig Latin words.
"""

from __future__ import annotations

import copy
import math
import tempfile
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..lm.corpus import LMData, from_pig_latin, pig_latin_word_rate
from ..lm.model import generate
from ..lm.train import EVAL_BATCH, evaluate
from ..lora.targets import block_index
from ..lowrank import energy_ranks, svd_factors, truncate
from ..method_specs import method_spec, runs_of
from ..results.finetune import (
    Amplification,
    AmplificationRow,
    Analysis,
    ExperimentResult,
    LayerSpectrum,
    MergeCheck,
    RsLoraRow,
    RunResult,
    Sample,
    Targets,
    TruncationRow,
)
from ..results.finetune_config import run_label
from ..results.headline import headline_run
from .context import RunContext
from .workload import Workload, layer_paths
from .workload import weight_out_in as _oi

TargetSets = list[tuple[str, tuple[str, ...]]]

__all__ = [
    "amplification",
    "analyse",
    "delta_spectra",
    "full_update_svd",
    "headline_lora",
    "merge_check",
    "merge_tolerance",
]

MERGE_TOL = 1e-5
# The merge check's logits: 64 windows, fewer for a large model, so that its five forwards
# (three fp32, two fp64) stay near the tiny LM's cost: parameters × tokens <= 4e9 (the tiny
# LM: 0.8 M × 64 × 64 = 3.3e9; SmolLM2-135M at 128 tokens: 2 windows, where 64 took minutes).
CHECK_WINDOWS, CHECK_BUDGET = 64, 4e9
SAMPLE_TEMPERATURE = 0.5   # samples: softmax(logits / 0.5), seeded per prompt (reproducible)


def _linear_deltas(base: nn.Module, tuned: nn.Module, modules: tuple[str, ...]
                   ) -> dict[str, torch.Tensor]:
    """``{layer path: W_tuned − W0}`` as ``(d_out, d_in)``, for the base's weight layers
    (``nn.Linear``, ``Conv1D``) named in ``modules``."""
    from ..lm.hf_model import is_linear_like

    out = {}
    for name, mod in base.named_modules():
        if is_linear_like(mod) and name.rsplit(".", 1)[-1] in modules:
            out[name] = (_oi(tuned.get_submodule(name)) - _oi(mod)).detach()
    return out


Factors = dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def full_update_svd(base: nn.Module, full: nn.Module, modules: tuple[str, ...]) -> Factors:
    """``{layer path: (U, S, Vh)}``: the thin SVD (float64, CPU) of ``ΔW_full`` of each layer
    in ``modules``, computed once for the spectra and every truncation."""
    return {name: svd_factors(delta.double().cpu())
            for name, delta in _linear_deltas(base, full, modules).items()}


def delta_spectra(base: nn.Module, full: nn.Module, modules: tuple[str, ...],
                  factors: Factors | None = None) -> list[LayerSpectrum]:
    """Singular values of ΔW_full for each layer in ``modules``, with the 90 %-energy rank
    (``factors``: :func:`full_update_svd` already made)."""
    factors = factors if factors is not None else full_update_svd(base, full, modules)
    rows = []
    for name, (u, s, vh) in factors.items():
        if name.rsplit(".", 1)[-1] not in modules:
            continue
        w0 = base.get_submodule(name).weight
        rows.append(LayerSpectrum(
            name=name, module=name.rsplit(".", 1)[-1], layer=block_index(name),
            shape=[u.shape[0], vh.shape[1]], delta_norm=float(s.norm()),
            relative_norm=float(s.norm() / w0.double().norm()),
            rank90=energy_ranks(s, (0.9,))["90%"],
            singular_values=s.tolist()))
    return rows


def check_windows(model: nn.Module, block_size: int) -> int:
    """Val windows the merge check compares logits on: :data:`CHECK_WINDOWS`, fewer (at least
    2) when ``parameters × windows × block_size`` would pass :data:`CHECK_BUDGET`."""
    n = sum(p.numel() for p in model.parameters())
    return max(2, min(CHECK_WINDOWS, int(CHECK_BUDGET // max(1, n * block_size))))


def merge_check(model: nn.Module, base: nn.Module, data: LMData, ctx: RunContext, *,
                val_loss: float, max_batches: int | None = None,
                batch_size: int = EVAL_BATCH) -> MergeCheck:
    """Merged vs unmerged logits (fp32 and fp64) on :func:`check_windows` val windows and
    val loss (on the ``max_batches`` val batches of ``batch_size`` windows ``val_loss`` was
    measured on), and a
    save/load round trip, for a LoRA model (not modified)."""
    from ..lora import load_adapter, lora_layers, merge_lora, save_adapter

    device = ctx.device
    x, _ = data.val_batches(check_windows(base, data.block_size), 1)[0]
    x = x.to(device)
    with torch.no_grad():
        ref = model(x).float()                                     # (B, T, V)
        merged = copy.deepcopy(model)
        merge_lora(merged)
        diff = float((merged(x).float() - ref).abs().max())
        with tempfile.TemporaryDirectory() as tmp:
            save_adapter(model, tmp)
            fresh = copy.deepcopy(base)
            load_adapter(fresh, tmp)
            reload = float((fresh.to(device)(x).float() - ref).abs().max())
        m64 = copy.deepcopy(model).double()
        ref64 = m64(x)                                             # fp64 reference
        plain64 = copy.deepcopy(base).double()                     # W0 + ΔW, formed in fp64
        for name, layer in lora_layers(m64).items():
            _oi(plain64.get_submodule(name)).add_(layer.delta_weight())
        diff64 = float((plain64(x) - ref64).abs().max())
    merged_loss = evaluate(merged, data, batch_size, max_batches, device=device,
                           dist=ctx.dist)
    fp32 = float((ref.double() - ref64).abs().max())
    tol = merge_tolerance(fp32)
    return MergeCheck(label="", max_abs_logit=float(ref.abs().max()), max_abs_logit_diff=diff,
                      max_abs_logit_diff_fp64=diff64, fp32_error=fp32,
                      reload_max_abs_logit_diff=reload, val_loss_unmerged=val_loss,
                      val_loss_merged=merged_loss, passed=diff <= tol and reload <= tol)


def merge_tolerance(fp32_error: float) -> float:
    """What merged-vs-unmerged fp32 logits may differ by: :data:`MERGE_TOL`, or twice fp32's
    own error on the same logits (unmerged fp32 against fp64) where that is larger: a merge
    cannot be checked below the rounding of the forward itself (a 135 M-parameter model's
    logits carry ~1e-4 of it; the tiny LM's ~1e-6)."""
    return max(MERGE_TOL, 2.0 * fp32_error)


def amplification(w0: torch.Tensor, delta: torch.Tensor, rank: int, source: str,
                  seed: int = 0) -> AmplificationRow:
    """The LoRA paper's Table 7 numbers for one ``ΔW`` at ``rank`` (see module doc)."""
    w = w0.double().cpu()
    d = delta.double().cpu()
    u, s, vh = torch.linalg.svd(d, full_matrices=False)
    proj = (u[:, :rank].T @ w @ vh[:rank].T).norm()      # (r, d_out)(d_out, d_in)(d_in, r)
    uw, _, vhw = torch.linalg.svd(w, full_matrices=False)
    proj_w = (uw[:, :rank].T @ w @ vhw[:rank].T).norm()
    gen = torch.Generator().manual_seed(seed)
    ur = torch.linalg.qr(torch.randn(w.shape[0], rank, generator=gen, dtype=w.dtype))[0]
    vr = torch.linalg.qr(torch.randn(w.shape[1], rank, generator=gen, dtype=w.dtype))[0]
    proj_r = (ur.T @ w @ vr).norm()
    norm = float(s.norm())
    return AmplificationRow(source=source, rank=rank, delta_norm=norm, proj_delta=float(proj),
                            proj_w=float(proj_w), proj_random=float(proj_r),
                            factor=norm / float(proj) if proj > 0 else math.inf)


def headline_lora(result: ExperimentResult, targets: str | None = None) -> RunResult | None:
    """The LoRA run the targets are judged on: rank 8 (or the nearest) on ``targets``
    (default: the last target set)."""
    targets = targets or result.config.targets[-1]
    cand = [r for r in runs_of(result.runs, "lora") if r.targets == targets]
    return headline_run(cand)


def _judged(result: ExperimentResult) -> list[RunResult]:
    """LoRA at r≈8 on every target set, then the rsLoRA run nearest r = 8 (if any)."""
    runs = [headline_lora(result, t) for t in result.config.targets]
    runs.append(headline_run(runs_of(result.runs, "rslora")))
    return [r for r in runs if r is not None]


def _targets(result: ExperimentResult, lora: RunResult) -> Targets:
    full = result.run("full")
    t = Targets(
        lora_label=lora.label, full_val_loss=full.final_val_loss,
        lora_val_loss=lora.final_val_loss,
        val_gap_percent=100 * (lora.final_val_loss / full.final_val_loss - 1),
        step_time_ratio=lora.step_time_s / full.step_time_s,
        optimizer_state_ratio=full.optimizer_state_bytes / lora.optimizer_state_bytes,
        base_val_loss=result.base_val_loss,
        base_over_full=result.base_val_loss / full.final_val_loss,
        base_over_lora=result.base_val_loss / lora.final_val_loss)
    t.met = {"val_gap <= 5%": t.val_gap_percent <= 5, "step_ratio <= 0.8": t.step_time_ratio
             <= 0.8, "optimizer_ratio >= 20": t.optimizer_state_ratio >= 20,
             "base clearly worse (>= 1.5x)": min(t.base_over_full, t.base_over_lora) >= 1.5}
    return t


def _samples(models: Mapping[str, nn.Module], data: LMData, tok: Any, n: int,
             max_new: int, pig_latin: bool = True) -> list[Sample]:
    """Continuations of the first words of ``n`` val lines (Pig Latin: read back into
    English; a user's text: its first 24 characters as the prompt, no reading)."""
    out = []
    for i, line in enumerate(data.val_lines[:n]):
        prompt = " ".join(line.split(" ")[:2]) + " " if pig_latin else line[:24]
        gens = {k: generate(m, tok, prompt, max_new, temperature=SAMPLE_TEMPERATURE, seed=i)
                for k, m in models.items()}
        out.append(Sample(
            prompt=prompt, prompt_english=from_pig_latin(prompt.strip()) if pig_latin else "",
            outputs=gens, english={k: from_pig_latin((prompt + g).strip())
                                   for k, g in gens.items()} if pig_latin else {}))
    return out


def _merge_checks(result: ExperimentResult, base: nn.Module, models: Mapping[str, nn.Module],
                  data: LMData, ctx: RunContext, done: dict[str, MergeCheck] | None = None
                  ) -> list[MergeCheck]:
    """:func:`merge_check` for every LoRA and rsLoRA run (plain adapters on the float base,
    which load into a fresh copy of it), labelled; those in ``done`` (made beside each run's
    training) are taken as they are."""
    runs = {r.label: r for r in result.runs}
    checks = []
    for label in models:                 # a model is read only when its check is still to make
        if method_spec(runs[label].method).sweep:
            c = (done or {}).get(label) or merge_check(
                models[label], base, data, ctx, val_loss=runs[label].final_val_loss,
                max_batches=result.config.spec.lora.eval_batches,
                batch_size=result.config.spec.lora.eval_batch_size)
            c.label = label
            checks.append(c)
    return checks


def _truncation(result: ExperimentResult, base: nn.Module, full: nn.Module, data: LMData,
                ctx: RunContext, sets: TargetSets, svd: Factors) -> list[TruncationRow]:
    """Val loss of ``W0 + [ΔW_full]_r`` on each target set at every rank (and untruncated),
    beside LoRA at that rank; one SVD per layer (``svd``: :func:`full_update_svd`;
    Eckart–Young: the best rank-r part)."""
    config, rows = result.config, []
    for label, modules in sets:
        deltas = _linear_deltas(base, full, modules)
        factors = {k: svd[k] for k in deltas}
        sv = {k: f[1] for k, f in factors.items()}
        for r in (*config.ranks, None):
            model = copy.deepcopy(base)
            with torch.no_grad():
                for name, delta in deltas.items():
                    upd = delta if r is None else truncate(factors[name], r).to(
                        delta.device, delta.dtype)
                    _oi(model.get_submodule(name)).add_(upd)
            kept = [float(s[:r].square().sum() / s.square().sum()) if r else 1.0
                    for s in sv.values()]
            lora = result.lora_run(r, label) if r is not None else None
            rows.append(TruncationRow(
                targets=label, rank=r,
                val_loss_truncated=evaluate(model, data, config.spec.lora.eval_batch_size,
                                            config.spec.lora.eval_batches,
                                            device=ctx.device, dist=ctx.dist),
                energy_kept=sum(kept) / len(kept),
                val_loss_lora=lora.final_val_loss if lora else None))
    return rows


def _amplification(result: ExperimentResult, base: nn.Module,
                   models: Mapping[str, nn.Module], sets: TargetSets) -> Amplification:
    """The LoRA paper's amplification factor on the middle block's ``q_proj`` (or the first
    targeted module), for LoRA at every rank and for the full update."""
    config = result.config
    with_q = [s for s in sets if "q_proj" in s[1]]
    first = with_q[0] if with_q else sets[0]
    module = "q_proj" if with_q else first[1][0]
    paths = layer_paths(base, module)
    layer = paths[len(paths) // 2]
    w0 = _oi(base.get_submodule(layer))
    amp = Amplification(layer=layer, w_norm=float(w0.double().norm()))
    full_delta = _linear_deltas(base, models["full"], (module,))[layer]
    for r in config.ranks:
        lora_label = run_label("lora", r, first[0])
        if lora_label in models:
            mod = models[lora_label].get_submodule(layer)
            delta = mod.delta_weight().detach()
            amp.rows.append(amplification(w0, delta, r, "lora", config.seed))
        amp.rows.append(amplification(w0, full_delta, r, "full", config.seed))
    return amp


def _rslora_rows(result: ExperimentResult) -> list[RsLoraRow]:
    """α/r against α/√r at the same rank, on the last target set."""
    label = result.config.targets[-1]
    rows = []
    for r in result.config.effective_rslora_ranks:
        a, b = result.lora_run(r, label), result.lora_run(r, label, rslora=True)
        if a and b:
            rows.append(RsLoraRow(rank=r, targets=label, scaling_alpha_over_r=a.scaling,
                                  scaling_alpha_over_sqrt_r=b.scaling,
                                  val_loss_alpha_over_r=a.final_val_loss,
                                  val_loss_alpha_over_sqrt_r=b.final_val_loss))
    return rows


def analyse(result: ExperimentResult, work: Workload, models: Mapping[str, nn.Module],
            ctx: RunContext, merge_checks: dict[str, MergeCheck] | None = None) -> Analysis:
    """Every analysis of the module doc, from the trained ``models`` (not modified) on
    ``work``'s base, data, tokenizer and target sets. Without a full fine-tuning run, what
    compares with it (spectra, truncation, amplification, targets) is left empty. Samples of
    the Pig Latin task are read back into English (a user's text: not). ``merge_checks``:
    those already made, by run label."""
    spec, base, data, sets = result.config.spec, work.base, work.ft, work.target_sets
    full = models.get("full")
    all_modules = tuple(dict.fromkeys(m for _, mods in sets for m in mods))
    head = headline_lora(result)
    shown = {"base": base} | ({"full": full} if full is not None else {})
    if head is not None:
        shown[head.label] = models[head.label]
    pig_latin = work.task == "pig-latin"
    samples = _samples(shown, data, work.tokenizer, spec.n_samples, 2 * data.block_size,
                       pig_latin=pig_latin)
    rates = {k: sum(pig_latin_word_rate(s.outputs[k]) for s in samples)
             / max(1, len(samples)) for k in shown} if pig_latin else {}
    with_full = full is not None
    svd = full_update_svd(base, full, all_modules) if with_full else {}
    return Analysis(
        merge_checks=_merge_checks(result, base, models, data, ctx, done=merge_checks),
        spectra=delta_spectra(base, full, all_modules, svd) if with_full else [],
        truncation=_truncation(result, base, full, data, ctx, sets, svd) if with_full else [],
        amplification=_amplification(result, base, models, sets) if with_full else None,
        rslora=_rslora_rows(result), samples=samples, pig_latin_word_rate=rates,
        targets=_targets(result, head) if head is not None and with_full else None,
        targets_by_set=[_targets(result, h) for h in _judged(result)] if with_full else [])

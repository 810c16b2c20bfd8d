"""Tables of the fine-tuning experiment (the CLI prints, this module formats).

:func:`format_tables` gives the results as aligned text (terminal) or GitHub markdown;
:func:`format_samples` the sample generations. :mod:`.outputs` writes them to files.
"""

from __future__ import annotations

import math

from ..choices import DEFAULT_METHODS
from ..method_specs import METHOD_SPECS, full_run, method_spec, runs_of
from ..results.finetune import Amplification, Analysis, ExperimentResult, MergeCheck, RunResult
from ..results.headline import headline_runs
from .forgetting_tables import study_lines as forgetting_lines
from .textable import _f, _table, _titled, human_bytes

__all__ = ["format_samples", "format_tables", "human_bytes", "task_name"]


def _runs_lines(result: ExperimentResult, h: str, markdown: bool) -> list[str]:
    """The heading and the table of runs: base, full fine-tuning, each LoRA / rsLoRA run."""
    cfg, spec = result.config, result.config.spec
    full = full_run(result.runs)
    model = (f"{cfg.model}, " if cfg.model else f"d={spec.model.d_model}, "
             f"{spec.model.n_layers} layers, ")
    lines = [f"{h}Full fine-tuning vs LoRA on {task_name(result)} ({cfg.preset} preset: "
             f"{model}{result.base.params:,} parameters; {spec.lora.steps} steps of "
             f"{spec.lora.batch_size}×{_block(result)} tokens; {result.device}"
             f"{f', {result.world_size} processes' if result.world_size > 1 else ''})", ""]
    rows = [["base (no fine-tuning)", "0", _f(result.base_val_loss), "", "", "", "", "", ""]]
    for r in result.runs:
        rows.append([
            r.label, f"{r.trainable_params:,} ({r.trainable_percent:.2f}%)",
            _f(r.final_val_loss), _vs_full(r, full),
            f"{1e3 * r.step_time_s:.1f}", f"{r.tokens_per_s:,.0f}",
            f"{r.flops_per_s / 1e9:.1f} ({100 * r.mfu:.1f}%)",
            human_bytes(r.optimizer_state_bytes), human_bytes(r.peak_memory_bytes)])
    lines += _table(["run", "trainable params", "val loss", "vs full", "step ms", "tokens/s",
                     "GFLOP/s (% of peak)", "optimizer state", "peak memory"], rows, markdown)
    r0 = result.runs[0]
    peak = r0.flops_per_s / r0.mfu if r0.mfu else math.nan    # FLOP/s, measured in the run
    unit = "token" if result.data else "character"
    return lines + ["", f"(val loss: mean next-{unit} cross-entropy in nats on held-out "
                    f"{task_name(result)}; % of peak: of the {_f(peak / 1e9, '.0f')} GFLOP/s "
                    f"matmul peak measured in this run (loralab.peak); peak memory: "
                    f"{result.runs[0].peak_memory_kind})"]


def _vs_full(r: RunResult, full: RunResult | None) -> str:
    return "—" if full is None else f"{100 * (r.final_val_loss / full.final_val_loss - 1):+.1f}%"


def _methods_lines(result: ExperimentResult, h: str, markdown: bool) -> list[str]:
    """Each method at the rank nearest 8 on the last target set: where it starts and ends,
    when it reaches full fine-tuning's loss, what it trains and costs."""
    if not set(result.config.methods) - set(DEFAULT_METHODS):
        return []
    runs = headline_runs(result)
    full = full_run(runs)
    last = result.config.spec.lora.steps
    rows = [[r.method, r.label, f"{r.trainable_params:,}", _f(r.initial_val_loss),
             _f(r.final_val_loss), _vs_full(r, full),
             "—" if full is None else (str(r.steps_to_full_loss) if r.steps_to_full_loss
                                       else f"not in {last}"),
             f"{1e3 * r.step_time_s:.1f}" + ("" if full is None else
                                              f" ({r.step_time_s / full.step_time_s:.2f}x)"),
             human_bytes(r.base_weight_bytes)] for r in runs]
    return _titled(f"{h}Methods compared (rank nearest 8 on {result.config.targets[-1]}; same "
                   "data, steps and seed)",
                   ["method", "run", "trainable", "start val", "final val", "vs full",
                    "steps to full's loss", "step ms (/ full)", "base weights"], rows, markdown)


def _quant_lines(result: ExperimentResult, h: str, markdown: bool) -> list[str]:
    """QLoRA and LoftQ against float LoRA at each rank: start, end, the base's bytes."""
    by = {(r.method, r.rank, r.targets): r for r in result.runs}
    rows = []
    for r in result.runs:
        if not method_spec(r.method).quantizes:
            continue
        lora = by.get(("lora", r.rank, r.targets))
        ref = [] if lora is None else [_f(lora.initial_val_loss), _f(lora.final_val_loss)]
        rows.append([r.label, _f(r.initial_val_loss), _f(r.final_val_loss),
                     *(ref or ["—", "—"]), human_bytes(r.base_weight_bytes),
                     "—" if lora is None else human_bytes(lora.base_weight_bytes)])
    if not rows:
        return []
    return _titled(f"{h}QLoRA and LoftQ: LoRA on a 4-bit NF4 base (blocks of 64, fp32 scales)",
                   ["run", "start val", "final val", "LoRA start", "LoRA final",
                    "base weights", "LoRA's base"], rows, markdown) + [
        "", "(start val: before the first step. QLoRA starts on the quantized base Q(W) with "
        "B = 0; LoftQ starts on Q(W) + s·B A, its adapter fitted to W − Q(W). Base weights: "
        "bytes of the tensors the model holds, the packed 4-bit codes and block scales "
        "included, the float embeddings, norms and head too)"]


def _memory_lines(result: ExperimentResult, h: str, markdown: bool) -> list[str]:
    """The plan's memory estimate beside the peak each kind of run measured (full; the
    adapter at the largest rank on the last target set; QLoRA likewise)."""
    rows = []
    for m in result.memory:
        cand = [r for r in runs_of(result.runs, m["method"])
                if r.rank == m["rank"] or not method_spec(m["method"]).is_adapter]
        run = next((r for r in cand if r.targets == result.config.targets[-1]), None) or (
            cand[0] if cand else None)
        rows.append([m["label"], human_bytes(m["weights"]), human_bytes(m["gradients"]),
                     human_bytes(m["optimizer_state"]), human_bytes(m["activations"]),
                     human_bytes(m["total"]), run.label if run else "—",
                     human_bytes(run.peak_memory_bytes) if run else "—",
                     f"{m['total'] / run.peak_memory_bytes:.2f}" if run else "—"])
    if not rows:
        return []
    return _titled(f"{h}Memory: the estimate made before training vs the peak measured",
                   ["estimate", "weights", "grads", "optimizer", "activations", "total",
                    "run", "measured peak", "estimate / peak"], rows, markdown)


def _direction_lines(a: Analysis, h: str, markdown: bool) -> list[str]:
    """DoRA's Figure 2 here: the correlation of ΔM with ΔD per method, the paper's sign."""
    md = a.magnitude_direction
    if md is None:
        return []
    want = {m: s.paper_slope for m, s in METHOD_SPECS.items() if s.paper_slope}
    rows = [[m, f"{c:+.2f}", _f(md.within_step.get(m), "+.2f"), want.get(m, "—"),
             {True: "yes", False: "no"}.get(md.reproduced.get(m), "—")]
            for m, c in md.correlation.items()]
    return _titled(f"{h}DoRA's magnitude/direction view: correlation of ΔM with ΔD "
                   f"({md.module}, every layer, every evaluation step)",
                   ["method", "Pearson r(ΔD, ΔM)", "within a step", "DoRA paper", "same sign"],
                   rows, markdown)


def _targets_lines(a: Analysis, h: str, markdown: bool) -> list[str]:
    """One column per target set: each target's measured value and ``met`` / ``MISSED``."""
    if not a.targets_by_set:
        return []
    ok = lambda b: "met" if b else "MISSED"  # noqa: E731
    cols = [t.lora_label for t in a.targets_by_set]
    names = ["LoRA val loss within 5% of full", "LoRA step time <= 0.8x full",
             "optimizer state >= 20x smaller", "base clearly worse than both"]
    cells = [[f"{t.val_gap_percent:+.1f}%", f"{t.step_time_ratio:.2f}x",
              f"{t.optimizer_state_ratio:.1f}x",
              f"{min(t.base_over_full, t.base_over_lora):.1f}x"] for t in a.targets_by_set]
    rows = [[name] + [f"{c[i]} {ok(list(t.met.values())[i])}"
                      for c, t in zip(cells, a.targets_by_set, strict=True)]
            for i, name in enumerate(names)]
    return _titled(f"{h}Targets (LoRA against full fine-tuning; last row: base val loss / "
                   "the higher of the two)", ["target", *cols], rows, markdown)


def _merge_lines(checks: list[MergeCheck]) -> list[str]:
    """One paragraph: the worst merged-vs-unmerged logit gap (fp32, fp64, reload) over runs."""
    if not checks:
        return []
    worst = max(checks, key=lambda c: c.max_abs_logit_diff)
    over = sum(not c.passed for c in checks)
    verdict = ("within max(1e-5, 2 × fp32's own error) in every run" if not over
               else f"above max(1e-5, 2 × fp32's own error) in {over} run(s)")
    scale = max(c.max_abs_logit for c in checks)
    fp32 = max(c.fp32_error for c in checks)
    fp64 = max(c.max_abs_logit_diff_fp64 for c in checks)
    reload = max(c.reload_max_abs_logit_diff for c in checks)
    return ["", f"Merge check ({len(checks)} LoRA runs; logits of one val batch, up to "
            f"{scale:.1f} in size): merged vs unmerged max |diff| in fp32 = "
            f"{worst.max_abs_logit_diff:.2e} ({worst.label}), {verdict}; fp32's own "
            f"error on these logits (fp32 vs fp64) is up to {fp32:.2e}; in fp64 merged vs "
            f"unmerged: {fp64:.1e}; save_adapter -> load_adapter: {reload:.1e}. Val loss "
            f"merged {worst.val_loss_merged:.6f} vs unmerged {worst.val_loss_unmerged:.6f}."]


def _truncation_lines(result: ExperimentResult, a: Analysis, h: str,
                      markdown: bool) -> list[str]:
    """Val loss of ``W0 + [ΔW_full]_r`` (and the energy ``Σ_{i≤r}σ_i²/Σσ²`` it keeps) beside
    LoRA trained at rank r."""
    if not a.truncation:
        return []
    full = result.run("full")
    rows = [[tr.targets, "all" if tr.rank is None else str(tr.rank), f"{100 * tr.energy_kept:.0f}%",
             _f(tr.val_loss_truncated), _f(tr.val_loss_lora)] for tr in a.truncation]
    lines = _titled(f"{h}The bridge to the SVD: W0 + ΔW_full truncated to rank r "
                    "vs LoRA trained at rank r",
                    ["targets", "rank r", "energy of ΔW_full kept", "val W0+[ΔW_full]_r",
                     "val LoRA r"], rows, markdown)
    return lines + ["", f"(full fine-tuning itself, embeddings and norms included: "
                    f"{full.final_val_loss:.3f}; base: {result.base_val_loss:.3f})"]


def _spectra_lines(a: Analysis, h: str, markdown: bool) -> list[str]:
    """Per module: its ``(d_out × d_in)`` shape, the rank holding 90 % of ``Σσ²`` of ΔW_full
    and ``‖ΔW‖_F / ‖W0‖_F``, each listed over layers 0..L-1."""
    if not a.spectra:
        return []
    by_mod: dict[str, list] = {}
    for s in a.spectra:
        by_mod.setdefault(s.module, []).append(s)
    many = max(len(ss) for ss in by_mod.values()) > _LIST_LAYERS
    rows = [[m, f"{ss[0].shape[0]}×{ss[0].shape[1]}",
             _over_layers([s.rank90 for s in ss], "d", many),
             _over_layers([s.relative_norm for s in ss], ".2g", many)]
            for m, ss in by_mod.items()]
    what = ("min / median / max over the layers" if many else "layers 0..L-1")
    return _titled(f"{h}Spectrum of ΔW_full per layer: rank holding 90% of Σσ² ({what})",
                   ["module", "shape", "rank for 90% energy", "‖ΔW‖_F / ‖W0‖_F"], rows,
                   markdown)


_LIST_LAYERS = 8          # more layers than this: min / median / max instead of the list


def _over_layers(values: list, spec: str, summary: bool) -> str:
    """``1, 2, 3, 4`` (every layer) or ``1 / 3 / 9`` (min / median / max over many)."""
    if not summary:
        return ", ".join(format(v, spec) for v in values)
    ordered = sorted(values)
    return " / ".join(format(v, spec) for v in (ordered[0], ordered[len(ordered) // 2],
                                                 ordered[-1]))


def _forgetting_lines(result: ExperimentResult, h: str, markdown: bool) -> list[str]:
    """Each run's loss on the target text and on the source domain (the tiny LM's held-out
    pretraining English, a real-model preset's held-out general text), against the base's
    (the increase on the source domain is what the run forgot)."""
    base = result.base
    if base.general_val_loss is None:
        return []
    rows = [["base (no fine-tuning)", _f(base.finetune_val_loss), "", _f(base.general_val_loss),
             ""]]
    for r in result.runs:
        forgot = (None if r.general_val_loss is None
                  else r.general_val_loss - base.general_val_loss)
        rows.append([r.label, _f(r.final_val_loss),
                     f"{r.final_val_loss - base.finetune_val_loss:+.3f}",
                     _f(r.general_val_loss), "—" if forgot is None else f"{forgot:+.3f}"])
    study = getattr(getattr(result, "analysis", None), "forgetting", None)
    general = (study.source if study is not None else
               f"{result.data.get('general', 'the general text')} (held out)"
               if result.data else "the source domain")
    return _titled(f"{h}Learning and forgetting: the target text against {general}",
                   ["run", "target val loss", "learned (vs base)", "source val loss",
                    "forgot (vs base)"], rows, markdown)


def _amplification_lines(amp: Amplification | None, h: str, markdown: bool) -> list[str]:
    """The amplification factor ``‖ΔW‖_F / ‖Uᵀ W0 V‖_F`` of each ΔW, with the projections of
    ``W0`` on ΔW's, W0's own and random directions."""
    if amp is None:
        return []
    rows = [[r.source, str(r.rank), f"{r.delta_norm:.3f}", f"{r.proj_delta:.3f}",
             f"{r.proj_w:.3f}", f"{r.proj_random:.3f}", f"{r.factor:.3g}"] for r in amp.rows]
    return _titled(f"{h}Amplification factor ‖ΔW‖_F / ‖Uᵀ W0 V‖_F for {amp.layer} "
                   f"(‖W0‖_F = {amp.w_norm:.2f})",
                   ["ΔW from", "r", "‖ΔW‖_F", "‖UᵀW0V‖ (ΔW dirs)", "(W0 dirs)",
                    "(random dirs)", "factor"], rows, markdown)


def _rslora_lines(result: ExperimentResult, a: Analysis, h: str, markdown: bool) -> list[str]:
    """Scale ``α/r`` (LoRA) against ``α/√r`` (rsLoRA): each scale and its final val loss."""
    if not a.rslora:
        return []
    rows = [[str(r.rank), r.targets, f"{r.scaling_alpha_over_r:g}",
             _f(r.val_loss_alpha_over_r), f"{r.scaling_alpha_over_sqrt_r:.3g}",
             _f(r.val_loss_alpha_over_sqrt_r)] for r in a.rslora]
    return _titled(f"{h}Scale α/r (LoRA) vs α/√r (rsLoRA), α = {result.config.lora_alpha:g}",
                   ["r", "targets", "α/r", "val loss", "α/√r", "val loss"], rows, markdown)


def format_tables(result: ExperimentResult, markdown: bool = False) -> str:
    """All tables: runs, targets, truncation vs LoRA, ΔW spectra, amplification, rsLoRA."""
    h = "### " if markdown else ""
    lines = _runs_lines(result, h, markdown)
    lines += _forgetting_lines(result, h, markdown)
    a = result.analysis
    if a is None:
        return "\n".join(lines)
    lines += _targets_lines(a, h, markdown)
    lines += _merge_lines(a.merge_checks)
    lines += _truncation_lines(result, a, h, markdown)
    lines += _spectra_lines(a, h, markdown)
    lines += _amplification_lines(a.amplification, h, markdown)
    lines += _rslora_lines(result, a, h, markdown)
    lines += _methods_lines(result, h, markdown)
    lines += _quant_lines(result, h, markdown)
    lines += _direction_lines(a, h, markdown)
    lines += forgetting_lines(a, h, markdown)
    lines += _memory_lines(result, h, markdown)
    if result.floor is not None:            # the time the arithmetic allows, beside the wall
        lines += ["", f"{h}Time" if markdown else "Time", "", result.floor.line()]
    return "\n".join(lines)


def task_name(result: ExperimentResult) -> str:
    """What was fine-tuned on: ``Pig Latin``, or the ``--data`` text's name."""
    name = result.data.get("name") if result.data else None
    return "Pig Latin" if name in (None, "pig-latin") else str(name)


def _block(result: ExperimentResult) -> int:
    return int(result.data.get("block_size", result.config.spec.model.block_size)
               if result.data else result.config.spec.model.block_size)


def format_samples(result: ExperimentResult) -> str:
    """Prompts, each model's continuation, and (Pig Latin) the English it spells."""
    a = result.analysis
    if not a.pig_latin_word_rate:
        lines = ["Sample generations (temperature 0.5, a fixed seed per prompt). Each prompt is "
                 f"the start of a held-out unit of {task_name(result)}.", ""]
        for s in a.samples:
            lines.append(f"prompt: {s.prompt!r}")
            lines += [f"  {k:>18}: {out.rstrip()!r}" for k, out in s.outputs.items()]
            lines.append("")
        return "\n".join(lines)
    lines = ["Sample generations (temperature 0.5, a fixed seed per prompt). Each prompt is the "
             "start of a", "held-out Pig Latin line; 'reads as' turns Pig Latin back into "
             "English ('?word' = not a Pig Latin word).", ""]
    for s in a.samples:
        lines.append(f"prompt: {s.prompt!r}   ({s.prompt_english} ...)")
        for k, out in s.outputs.items():
            lines.append(f"  {k:>18}: {out.rstrip()!r}")
            lines.append(f"  {'reads as':>18}  {s.english[k]}")
        lines.append("")
    rates = ", ".join(f"{k} {100 * v:.0f}%" for k, v in a.pig_latin_word_rate.items())
    lines.append(f"valid Pig Latin words in the continuations: {rates}")
    return "\n".join(lines)

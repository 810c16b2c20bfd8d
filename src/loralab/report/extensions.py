"""The report's extension chapters (the seed's section 8): low-rank analyses and the
fine-tuning experiment, computed by :mod:`loralab.lowrank` and :mod:`loralab.experiment`.

Each function returns :class:`~loralab.report.Extension` records in the page's language: the
values its template (``templates/ext_<key>.html.j2``) shows, and its figures.
When a module is not installed, or the config skips it, the record says so (``missing``) and
the page shows that line instead of the chapter.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import lowrank as lr
from ..experiment import ExperimentConfig, ExperimentResult, run_experiment, total_steps
from ..experiment.merge_study import merge_study
from ..method_specs import full_run, method_spec, runs_of
from ..plots import finetune as pft
from ..plots import lowrank as plr
from ..plots.merge_methods import merge_methods_figure
from ..results.finetune import RunResult
from .data import Extension, ReportData
from .figure_zh import localized_png as _png
from .forgetting import study_values as forgetting_values
from .methods import method_figures, method_values, read_finetune_result
from .studies import read_study_results, study_figures, study_values
from .text import plain, t

__all__ = ["LOWRANK_KEYS", "finetune_extension", "finetune_from_result", "lowrank_extensions",
           "merge_extension"]

LOWRANK_KEYS: tuple[str, ...] = ("svd", "spectrum", "heatmap", "fit")


# Sizes of the analyses per preset: the fit's target size and steps, and heatmap cells.
LOWRANK_PRESETS: dict[str, dict] = {
    "quick": {"fit_size": 64, "fit_ranks": (1, 2, 4, 8), "fit_steps": 300,
              "spectral_check": False, "max_cells": 64, "merge_steps": 20},
    "default": {"fit_size": 128, "fit_ranks": (1, 2, 4, 8, 16), "fit_steps": 500,
                "spectral_check": True, "max_cells": 96, "merge_steps": 30},
}
HEAT_SCALE = 0.2        # the heatmaps' ΔW is this fraction of ‖W0‖_F (a small update)



def _svd(data: ReportData, w0, upd, names: tuple[str, str], gen: torch.Generator,
         p: dict) -> Extension:
    """7.1: the seed's random update against the SVD optimum, with the Eckart–Young check
    (``gen`` has drawn ``w0`` and draws the seed's ``B, A`` next, as the demo does)."""
    cfg, lang, sl, font = data.config, data.config.lang, data.slider, data.cjk_font
    ranks = [row.rank for row in sl.rows]
    g = lr.analyze_svd(w0, ranks, alpha=sl.alpha, seed=gen, label=names[0], gaussian=True,
                       spectral_check=p["spectral_check"])
    u = lr.analyze_svd(upd, ranks, alpha=sl.alpha, seed=cfg.seed + 2, label=names[1],
                       spectral_check=p["spectral_check"])
    data.results["svd"] = (g, u)
    checks = [a.check for a in (g, u) if a.check is not None]
    spec = [c.max_spectral_diff for c in checks if c.max_spectral_diff is not None]
    values = {"d": cfg.hidden_size, "n": len(ranks),
              "fro": f"{max(c.max_frobenius_diff for c in checks):.1e}",
              "spec": f"{max(spec):.1e}" if spec else None}
    return Extension("svd", values=values, figures=[
        (_png(plr.svd_figure(g), font), t("x_svd_cap_g", lang, d=cfg.hidden_size)),
        (_png(plr.svd_figure(u), font), t("x_svd_cap_u", lang, k=sl.signal_rank))])


def _spectrum(data: ReportData, w0, upd, names: tuple[str, str]) -> Extension:
    """7.2: the two spectra and the ranks that hold 50/90/99 % of the energy."""
    lang, sl = data.config.lang, data.slider
    spectra = [lr.spectrum(w0, label=names[0], gaussian=True), lr.spectrum(upd, label=names[1])]
    data.results["spectrum"] = spectra
    page_names = (t("x_w0", lang), t("x_upd", lang, k=sl.signal_rank))
    g90, u90 = (sp.energy_ranks.get("90%") for sp in spectra)
    values = {"d": data.config.hidden_size, "g90": g90, "u90": u90,
              "fractions": list(spectra[0].energy_ranks),
              "rows": [[name] + [str(v) for v in sp.energy_ranks.values()]
                       for name, sp in zip(page_names, spectra, strict=True)]}
    return Extension("spectrum", values=values, figures=[
        (_png(plr.spectrum_figure(spectra), data.cjk_font), t("x_spec_cap", lang))])


def _heatmap(data: ReportData, w0, upd, p: dict) -> Extension:
    """7.3: W0, W, a small update and its residual at the seed's ranks."""
    heat_ranks = [r for r in (2, 4, 8, 16, 32) if r <= data.config.hidden_size]
    delta = upd * (HEAT_SCALE * float(w0.norm()) / float(upd.norm()))
    fig = plr.heatmaps_figure(w0, delta, heat_ranks, max_cells=p["max_cells"])
    caption = t("x_heat_cap", data.config.lang, ranks=", ".join(map(str, heat_ranks)))
    return Extension("heatmap", values={},
                     figures=[(_png(fig, data.cjk_font), caption)])


def _fit(data: ReportData, p: dict) -> Extension:
    """7.4: B and A learned by Adam against the Eckart–Young floor."""
    cfg, sl = data.config, data.slider
    n = min(p["fit_size"], cfg.hidden_size)
    fit_ranks = [r for r in p["fit_ranks"] if r <= n]
    target = lr.low_rank_plus_noise(n, n, rank=min(sl.signal_rank, n), noise=sl.noise,
                                    seed=cfg.seed + 3)
    fit = lr.fit_lowrank(target, fit_ranks, steps=p["fit_steps"], alpha=sl.alpha, seed=cfg.seed)
    data.results["fit"] = fit
    worst = max(f.learned_error / f.optimal_error for f in fit.fits if f.optimal_error > 0)
    values = {"n": n, "steps": p["fit_steps"], "worst": f"{worst:.4f}", "rows": [
        [str(f.rank), f"{f.learned_error:.3f}", f"{f.optimal_error:.3f}",
         f"{f.learned_error / f.optimal_error:.4f}" if f.optimal_error > 0 else "–"]
        for f in fit.fits]}
    return Extension("fit", values=values, figures=[
        (_png(plr.fit_figure(fit), data.cjk_font), t("x_fit_cap", cfg.lang))])


def lowrank_extensions(data: ReportData) -> dict[str, Extension]:
    """Chapters 7.1–7.4 from :mod:`loralab.lowrank` and :mod:`loralab.plots.lowrank`: the
    SVD sweep with the Eckart–Young check, the spectra, the heatmaps and the learned fits,
    on the seed's ``W0`` and the rank explorer's structured update."""
    cfg = data.config
    if not cfg.analyses:
        why = t("ext_skipped", cfg.lang, why="analyses=False")
        return {k: Extension(k, missing=why) for k in LOWRANK_KEYS}
    p = LOWRANK_PRESETS[cfg.preset]
    d, sl = cfg.hidden_size, data.slider
    gen = torch.Generator().manual_seed(cfg.seed)
    w0 = lr.gaussian_matrix(d, d, seed=gen)               # the demo's W0, then the seed's B, A
    upd = lr.low_rank_plus_noise(d, d, rank=sl.signal_rank, noise=sl.noise, seed=cfg.seed + 1)
    flang = "zh" if data.cjk_font else "en"            # labels inside figures need a CJK font
    names = (plain("x_w0", flang), plain("x_upd", flang, k=sl.signal_rank))
    return {"svd": _svd(data, w0, upd, names, gen, p),
            "spectrum": _spectrum(data, w0, upd, names),
            "heatmap": _heatmap(data, w0, upd, p), "fit": _fit(data, p)}


def merge_extension(data: ReportData) -> Extension:
    """Chapter 7.6: two adapters trained on their own texts, merged every way
    ``add_weighted_adapter`` knows, each scored against the exact weighted sum
    (:func:`loralab.experiment.merge_study.merge_study`)."""
    cfg = data.config
    if not cfg.analyses:
        return Extension("merge", missing=t("ext_skipped", cfg.lang, why="analyses=False"))
    steps = LOWRANK_PRESETS[cfg.preset]["merge_steps"]
    errors, _ = merge_study(steps=steps, density=0.5, seed=cfg.seed)
    data.results["merge"] = errors
    rows = {r.combination: r for r in errors.rows}
    values = {"steps": steps, "cat": f"{rows['cat'].relative:.1e}",
              "svd": f"{rows['svd'].relative:.2f}", "linear": f"{rows['linear'].relative:.2f}",
              "rows": [[r.combination, str(r.rank), f"{r.relative:.3g}"] for r in errors.rows]}
    return Extension("merge", values=values, figures=[
        (_png(merge_methods_figure(errors), data.cjk_font), t("x_merge_cap", cfg.lang))])


def finetune_extension(data: ReportData, *,
                       on_steps: Callable[[str, int, int], None] | None = None) -> Extension:
    """Chapter 7.5: full fine-tuning against LoRA on the tiny causal LM
    (:func:`loralab.experiment.run_experiment` at the report's preset, the base cached as the
    experiment caches it). Also fills the overview's headline and the rank explorer's
    fine-tuning line for the ranks the experiment trained."""
    lang = data.config.lang
    if not data.config.finetune:
        return Extension("finetune", missing=t("ext_skipped", lang, why="finetune=False"))
    if data.config.finetune_dir is not None:
        return finetune_from_result(data, read_finetune_result(data.config.finetune_dir))
    # RunOptions' defaults: device "auto" (CUDA when present, as `loralab finetune`)
    config = ExperimentConfig(preset=data.config.preset, seed=data.config.seed)
    total = total_steps(config)

    def progress(label: str, steps: int) -> None:
        if on_steps is not None:
            on_steps(label, steps, total)

    result = run_experiment(config, progress=progress)
    try:
        return finetune_from_result(data, result)
    except (AttributeError, KeyError, TypeError, IndexError) as exc:
        # The experiment ran but its result no longer has the fields this chapter reads
        # (the tests call finetune_from_result directly and fail loudly on such a change);
        # the page still gets built, and says what went wrong.
        why = f"{type(exc).__name__}: {exc}"
        return Extension("finetune", missing=t("ft_unreadable", lang, why=why))


def finetune_from_result(data: ReportData, result: ExperimentResult) -> Extension:
    """The chapter from a finished :class:`loralab.experiment.ExperimentResult` (tests pass a
    small one); sets ``data.headline`` and ``data.slider_extra`` (the ranks it trained).

    Every field the chapter shows is read here, so a result without one fails now (and
    :func:`finetune_extension` says so on the page), never while the page renders."""
    lang, font = data.config.lang, data.cjk_font
    data.results["finetune"] = result
    a = result.analysis
    full = full_run(result.runs)
    values = {
        "params": f"{result.base.params:,}", "base": f"{result.base_val_loss:.3f}",
        "full": f"{full.final_val_loss:.3f}" if full is not None else "—",
        "user": {"model": result.config.model or t("ft_tiny", lang),
                 "data": (result.data or {}).get("name", "Pig Latin"),
                 "split": (result.data or {}).get("summary", ""),
                 "targets": ", ".join(result.config.targets)} if result.data else None,
        "rows": [[r.label, f"{r.trainable_params:,} ({r.trainable_percent:.2f}%)",
                  f"{r.final_val_loss:.3f}", f"{1000 * r.step_time_s:.1f}",
                  f"{r.optimizer_state_bytes / 2**10:,.0f} KiB", _memory_cell(result, r)]
                 for r in result.runs],
        "time": _time(result),
        "targets": _targets(data, result), "merge": _merge(getattr(a, "merge_checks", [])),
        "samples": _samples(getattr(a, "samples", []), lang),
        **method_values(result, lang), "forgetting": forgetting_values(result, lang)}
    studies = [result, *read_study_results(_other_dirs(data.config.study_dirs,
                                                       data.config.finetune_dir))]
    values["studies"] = study_values(studies, lang)
    figures = [(_png(pft.convergence_figure(result), font), t("ft_cap_conv", lang))]
    if full is not None and result.study is None:    # a study shows its own figure
        figures += [(_png(pft.bridge_figure(result), font), t("ft_cap_bridge", lang)),
                    (_png(pft.cost_figure(result), font), t("ft_cap_cost", lang))]
    figures += method_figures(result, lang, font)
    figures += study_figures(studies, lang, font)
    _slider_lines(data, result)
    return Extension("finetune", values=values, figures=figures)


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def _memory_cell(result: ExperimentResult, run: RunResult) -> str:
    """The run's measured peak, and the plan's estimate for its kind made before training."""
    kind = method_spec(run.method).estimate_as
    plan = next((m["total"] for m in result.memory if m.get("method") == kind), None)
    return _gib(run.peak_memory_bytes) + (f" ({_gib(plan)})" if plan else "")


def _time(result: ExperimentResult) -> dict | None:
    """Wall time, and the floor its FLOPs allow at the matmul peak measured in the run."""
    f = result.floor
    if f is None or not f.floor_s > 0:
        return None
    return {"wall": f"{f.wall_s / 60:.1f}", "floor": f"{f.floor_s / 60:.1f}",
            "tflop": f"{f.flops / 1e12:.1f}", "peak": f"{f.peak_flops / 1e9:.0f}",
            "ratio": f"{f.ratio:.2f}", "device": result.device}


def _other_dirs(dirs: tuple[str, ...], shown: str | None) -> tuple[str, ...]:
    """``dirs`` less the folder the chapter already shows (``--finetune``)."""
    import os

    seen = {os.path.realpath(shown)} if shown is not None else set()
    out = []
    for d in dirs:
        if os.path.realpath(d) not in seen:
            seen.add(os.path.realpath(d))
            out.append(d)
    return tuple(out)


def _targets(data: ReportData, result: ExperimentResult) -> dict | None:
    """The targets box (the headline's LoRA run against full fine-tuning), and the overview's
    headline; ``None`` when the analysis has no targets."""
    tg = getattr(result.analysis, "targets", None)
    if isinstance(tg, (list, tuple)):            # one per target set: the headline's is first
        tg = tg[0] if tg else None
    if tg is None:
        return None

    def ok(word: str) -> str:      # ✓/✗ of the target whose name mentions ``word``
        met = [v for k, v in tg.met.items() if word in k]
        return ("✓" if all(met) else "✗") if met else ""

    data.headline = t("ft_headline", data.config.lang, lora=tg.lora_label,
                      l=f"{tg.lora_val_loss:.3f}", f=f"{tg.full_val_loss:.3f}",
                      b=f"{tg.base_val_loss:.3f}",
                      pct=f"{result.run(tg.lora_label).trainable_percent:.1f}%")
    return {"style": "box ok" if all(tg.met.values()) else "box", "text": {
        "lora": tg.lora_label, "gap": f"{tg.val_gap_percent:+.1f}", "g_ok": ok("gap"),
        "step": f"{tg.step_time_ratio:.2f}", "s_ok": ok("step"),
        "opt": f"{tg.optimizer_state_ratio:.0f}", "o_ok": ok("optimizer"),
        "base": f"{tg.base_over_full:.2f}", "b_ok": ok("base")}}


def _merge(checks: list) -> dict | None:
    """The merge check's sentence values (float32, and float64 where measured)."""
    if not checks:
        return None
    fp64 = [c.max_abs_logit_diff_fp64 for c in checks
            if getattr(c, "max_abs_logit_diff_fp64", None) is not None]
    noise = max(getattr(c, "fp32_error", 0.0) for c in checks)
    return {"n": len(checks), "diff": f"{max(c.max_abs_logit_diff for c in checks):.1e}",
            "ok": sum(c.passed for c in checks),
            # the identity in float64, and float32's own rounding
            "fp64": {"d64": f"{max(fp64):.1e}", "noise": f"{noise:.1e}"} if fp64 else None}


def _samples(samples: list, lang: str) -> dict | None:
    """The greedy continuations: one column per run (base and full named in ``lang``)."""
    if not samples:
        return None
    keys = list(samples[0].outputs)
    names = {"base": t("ft_base", lang), "full": t("ft_full", lang)}
    return {"heads": [names.get(k, k) for k in keys],
            "rows": [{"prompt": s.prompt, "english": s.prompt_english,
                      "cells": [(s.outputs[k], s.english.get(k, "")) for k in keys]}
                     for s in samples]}


def _slider_lines(data: ReportData, result: ExperimentResult) -> None:
    """One line per rank the experiment trained: LoRA's val loss there, and the val loss of
    ``W0 + [ΔW_full]_r`` (the full update truncated to rank r) on the same layers."""
    lang = data.config.lang
    targets = result.config.targets[-1]
    trunc = {row.rank: row for row in getattr(result.analysis, "truncation", [])
             if row.targets == targets and row.rank is not None}
    full_result = full_run(result.runs)
    full = full_result.final_val_loss if full_result is not None else float("nan")
    for run in runs_of(result.runs, "lora"):
        if run.targets != targets:
            continue
        tr = trunc.get(run.rank)
        tr_txt = f"{tr.val_loss_truncated:.3f}" if tr is not None else "–"
        data.slider_extra.setdefault(run.rank, {})["finetune"] = t(
            "sl_ft", lang, r=run.rank, targets=targets, lora=f"{run.final_val_loss:.3f}",
            trunc=tr_txt, full=f"{full:.3f}", base=f"{result.base_val_loss:.3f}")

"""A study's numbers and verdicts, from the experiment's runs (Schulman et al. 2025).

* **lr** (:func:`lr_curves`, :func:`lr_verdicts`): one curve of final val loss against
  learning rate per kind of run (full, LoRA at each rank); each curve's best rate on the
  grid and, between grid points, the vertex of the parabola through the best point and its
  two neighbours in ``(x = log10 lr, loss)``::

      x* = x1 − ½·[(x1−x0)²(y1−y2) − (x1−x2)²(y1−y0)] / [(x1−x0)(y1−y2) − (x1−x2)(y1−y0)]

  The claim "LoRA's best rate ≈ 10× full fine-tuning's, nearly independent of the rank"
  holds when every rank's ratio lies within half a decade of 10 (3.2 … 32) and the LoRA
  bests span at most half a decade; a best at the grid's edge leaves it unresolved
  ("partly").
* **placement** (:func:`placement_rows`, :func:`placement_verdict`): at each parameter
  budget, attention only against the MLP only and all linear layers; the claim (all layers
  and the MLP do at least as well as attention only at equal counts) holds when both are
  within :data:`TIE` of attention only or better at every budget. On a ``--model`` the
  three sets' widths ``P = Σ (d_in + d_out)`` come from its layers (:func:`model_widths`).
"""

from __future__ import annotations

import math

from torch import nn

from ..results.finetune import ExperimentResult, RunResult
from ..results.study import LrCurve, PlacementRow, StudyResult
from ..results.study_plan import PLACEMENT_SETS, StudyConfig, placement_ranks
from ..results.verdict import Verdict, VerdictWord
from .workload import layer_paths, weight_out_in

__all__ = ["HALF_DECADE", "SOURCE", "TIE", "best_lr_fit", "lr_curves", "lr_verdicts",
           "model_widths", "placement_rows", "placement_verdict", "study_result"]

SOURCE = "Schulman and Thinking Machines 2025, LoRA Without Regret"
HALF_DECADE = math.sqrt(10.0)
TIE = 0.005          # placement: losses within 0.5 % count as a match


def best_lr_fit(lrs: list[float], losses: list[float]) -> tuple[int, float]:
    """``(i, lr*)``: the index of the least loss and the parabola's vertex in log10 lr
    through it and its neighbours (module doc), kept between those neighbours; at an edge,
    or when the three points are not convex, ``lr*`` is the grid's rate."""
    i = min(range(len(losses)), key=losses.__getitem__)
    if i == 0 or i == len(lrs) - 1:
        return i, lrs[i]
    x0, x1, x2 = (math.log10(v) for v in lrs[i - 1:i + 2])
    y0, y1, y2 = losses[i - 1:i + 2]
    den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
    if den == 0:
        return i, lrs[i]
    x = x1 - 0.5 * ((x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)) / den
    return i, 10 ** min(max(x, x0), x2)


def lr_curves(runs: list[RunResult]) -> list[LrCurve]:
    """One :class:`LrCurve` per kind of run (full first, then LoRA by rank), its points in
    ascending learning rate (runs without ``lr`` are left out)."""
    kinds: dict[tuple[str, int | None], list[RunResult]] = {}
    for r in runs:
        if r.lr is not None:
            kinds.setdefault((r.method, r.rank), []).append(r)
    curves = []
    for (method, rank), group in sorted(kinds.items(), key=lambda kv: (kv[0][1] or 0)):
        group = sorted(group, key=lambda r: r.lr or 0.0)
        lrs = [float(r.lr or 0.0) for r in group]
        losses = [r.final_val_loss for r in group]
        i, fit = best_lr_fit(lrs, losses)
        curves.append(LrCurve(label=method if rank is None else f"{method}-r{rank}",
                              method=method, rank=rank, lrs=lrs, val_loss=losses,
                              best_lr=lrs[i], best_lr_fit=fit, best_val_loss=losses[i],
                              at_edge=len(lrs) > 1 and i in (0, len(lrs) - 1)))
    return curves


def _edge_note(curves: list[LrCurve]) -> tuple[str, str]:
    """Which curves have their best at the grid's edge, in English and Chinese (empty: none)."""
    edges = [(c.label, f"{c.best_lr:g}") for c in curves if c.at_edge]
    if not edges:
        return "", ""
    return ("the best sits at the grid's edge for " + ", ".join(f"{k} at {x}" for k, x in edges)
            + ", so the true best may lie outside the grid and the claim is unresolved there",
            "最优点位于网格边缘：" + "、".join(f"{k} 在 {x}" for k, x in edges)
            + "，真正的最优点可能在网格之外，该结论在此无法判定")


def _with_note(word: VerdictWord, why: tuple[str, str], note: tuple[str, str]
               ) -> tuple[VerdictWord, str, str]:
    """``(word, reason, reason_zh)``: a note on the grid's edge makes the word *partly* and
    joins the reason."""
    if not note[0]:
        return word, *why
    return ("partly", "; ".join(x for x in (why[0], note[0]) if x),
            "；".join(x for x in (why[1], note[1]) if x))


def _ratio_verdict(full: LrCurve, lora: list[LrCurve], ratios: dict[str, float]) -> Verdict:
    """LoRA's best rate against full fine-tuning's: within half a decade of 10 at each rank."""
    near = [k for k, v in ratios.items() if 10 / HALF_DECADE <= v <= 10 * HALF_DECADE]
    word: VerdictWord = ("holds" if len(near) == len(ratios) else "partly" if near
                         else "does not hold")
    why = ("", "") if word == "holds" else (
        f"the ratio lies within half a decade of 10 for {len(near)} of {len(ratios)} ranks",
        f"{len(ratios)} 个秩中有 {len(near)} 个的比值在 10 的半个数量级以内")
    word, reason, reason_zh = _with_note(word, why, _edge_note([full, *lora]))
    values = [f"{full.best_lr_fit:.2g}", *(f"{c.best_lr_fit:.2g} ({ratios[c.label]:.1f}x)"
                                           for c in lora)]
    return Verdict(study="lr", claim="LoRA's best learning rate is about 10x full "
                   "fine-tuning's", source=SOURCE, word=word,
                   measured=dict(zip(["full best", *(f"{c.label} best" for c in lora)],
                                     values, strict=True)), reason=reason,
                   claim_zh="LoRA 的最优学习率约为全参微调的 10 倍",
                   measured_zh=dict(zip(["全参最优", *(f"{c.label} 最优" for c in lora)],
                                        values, strict=True)), reason_zh=reason_zh)


def _rank_verdict(lora: list[LrCurve]) -> Verdict:
    """LoRA's best rates across ranks: their spread max/min within half a decade."""
    bests = [c.best_lr_fit for c in lora]
    spread = max(bests) / min(bests)
    word: VerdictWord = ("holds" if spread <= HALF_DECADE else "partly" if spread <= 10
                         else "does not hold")
    why = ("", "") if word == "holds" else (f"LoRA's best moves {spread:.1f}x across ranks",
                                            f"LoRA 的最优学习率在各秩之间相差 {spread:.1f} 倍")
    word, reason, reason_zh = _with_note(word, why, _edge_note(lora))
    values = [", ".join(str(c.rank) for c in lora), f"{spread:.2f}x"]
    return Verdict(study="lr", claim="LoRA's best learning rate barely depends on the rank "
                   "(alpha fixed, scale alpha/r)", source=SOURCE, word=word,
                   measured=dict(zip(["ranks", "spread max/min"], values, strict=True)),
                   reason=reason, claim_zh="LoRA 的最优学习率几乎不随秩变化（α 固定，缩放 α/r）",
                   measured_zh=dict(zip(["秩", "最大/最小之比"], values, strict=True)),
                   reason_zh=reason_zh)


def lr_verdicts(curves: list[LrCurve]) -> tuple[list[Verdict], dict[str, float]]:
    """The two claims of the lr study judged on ``curves`` (module doc; the rank's claim only
    with two ranks or more), and each LoRA curve's ratio of its best rate (fitted) to full
    fine-tuning's."""
    full = next((c for c in curves if c.method == "full"), None)
    lora = [c for c in curves if c.method != "full"]
    if full is None or not lora:
        return [], {}
    ratios = {c.label: c.best_lr_fit / full.best_lr_fit for c in lora}
    if len(lora) < 2:                    # one rank: nothing to say about the rank
        return [_ratio_verdict(full, lora, ratios)], ratios
    return [_ratio_verdict(full, lora, ratios), _rank_verdict(lora)], ratios


def model_widths(base: nn.Module, target_sets: list[tuple[str, tuple[str, ...]]]
                 ) -> tuple[dict[str, int], int]:
    """``({set: P}, bound)`` of ``base``'s placement sets (``target_sets`` in the order of
    :data:`PLACEMENT_SETS`): ``P = Σ (d_in + d_out)`` over every layer of the set's modules,
    and the least ``min(d_out, d_in)`` of those layers (a LoRA's rank bound)."""
    widths, bound = {}, None
    for key, (_, modules) in zip(PLACEMENT_SETS, target_sets, strict=True):
        shapes = [weight_out_in(base.get_submodule(p)).shape for m in modules
                  for p in layer_paths(base, m)]
        widths[key] = sum(o + i for o, i in shapes)
        bound = min([bound or math.inf, *(min(s) for s in shapes)])
    return widths, int(bound)


def placement_rows(result: ExperimentResult) -> list[PlacementRow]:
    """Full fine-tuning, then per budget rank ``r_all`` the three placements with their
    trainable parameters over the all-linear run's. The sets are the config's target sets
    in the order of :data:`PLACEMENT_SETS` (a model's are labelled ``attn``, ``mlp``,
    ``all``); each set's width is its runs' ``trainable / rank`` (a LoRA trains ``r·P``)."""
    full = next((r for r in result.runs if r.method == "full"), None)
    by_label = {r.label: r for r in result.runs}
    key = dict(zip(result.config.targets, PLACEMENT_SETS, strict=False))
    widths = {key[r.targets]: r.trainable_params // r.rank for r in result.runs
              if r.method == "lora" and r.rank and r.targets in key}
    rows = []
    if full is not None:
        rows.append(PlacementRow(label=full.label, targets="all weights", rank=None,
                                 budget_rank=None, trainable_params=full.trainable_params,
                                 param_ratio=None, final_val_loss=full.final_val_loss))
    for r_all in result.config.ranks:
        ranks = placement_ranks(widths, r_all)
        runs = {t: next(r for r in by_label.values() if r.method == "lora"
                        and key.get(r.targets) == t and r.rank == k) for t, k in ranks.items()}
        budget = runs["attn+mlp"].trainable_params
        rows += [PlacementRow(label=r.label, targets=t, rank=r.rank, budget_rank=r_all,
                              trainable_params=r.trainable_params,
                              param_ratio=r.trainable_params / budget,
                              final_val_loss=r.final_val_loss) for t, r in runs.items()]
    return rows


def placement_verdict(rows: list[PlacementRow]) -> Verdict:
    """All linear layers and the MLP only against attention only at every budget."""
    budgets = sorted({r.budget_rank for r in rows if r.budget_rank is not None})
    wins, measured, measured_zh = 0, {}, {}
    for b in budgets:
        at = {r.targets: r for r in rows if r.budget_rank == b}
        attn = at["attn"].final_val_loss
        ok = all(at[t].final_val_loss <= attn * (1 + TIE) for t in PLACEMENT_SETS[1:])
        wins += ok
        params = f"{at['attn+mlp'].trainable_params:,}"
        value = ", ".join(f"{t} {at[t].final_val_loss:.3f}" for t in PLACEMENT_SETS)
        measured[f"budget r={b} ({params} params)"] = value
        measured_zh[f"预算 r={b}（{params} 个参数）"] = value
    full = next((r for r in rows if r.budget_rank is None), None)
    if full is not None:
        measured["full fine-tuning"] = measured_zh["全参微调"] = f"{full.final_val_loss:.3f}"
    word = "holds" if wins == len(budgets) else "partly" if wins else "does not hold"
    why, why_zh = ("", "") if word == "holds" else (
        f"MLP only and all layers reach attention only's loss (within {100 * TIE:.1f} %) at "
        f"{wins} of {len(budgets)} budgets",
        f"{len(budgets)} 个预算中有 {wins} 个，仅 MLP 与全部层达到了仅注意力的损失（相差在 "
        f"{100 * TIE:.1f} % 以内）")
    return Verdict(study="placement", claim="at equal trainable parameters, LoRA on all "
                   "layers and on the MLP does at least as well as attention only",
                   source=SOURCE, word=word, measured=measured, reason=why,
                   claim_zh="在相同可训练参数量下，作用于全部层和 MLP 的 LoRA 至少与仅注意力的"
                   "一样好",
                   measured_zh=measured_zh, reason_zh=why_zh)


def study_result(study: StudyConfig, result: ExperimentResult) -> StudyResult:
    """The study's table and verdicts from ``result``'s runs, its wall time and FLOP floor
    the experiment's (:func:`loralab.experiment.floor.experiment_floor`, set before)."""
    floor = result.floor.floor_s if result.floor is not None else math.nan
    out = StudyResult(name=study.name, floor_s=floor if math.isfinite(floor) else None,
                      wall_s=result.wall_s)
    if study.name == "lr":
        out.curves = lr_curves(result.runs)
        out.verdicts, out.ratios = lr_verdicts(out.curves)
    else:
        out.placement = placement_rows(result)
        out.verdicts = [placement_verdict(out.placement)]
    return out

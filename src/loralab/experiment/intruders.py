"""Intruder dimensions of every run, and the λ mitigation (Shuttleworth et al., 2024).

From the trained models already in memory (no extra training): for full fine-tuning and every
LoRA / rsLoRA run, each analysed matrix's ``W = W0 + ΔW`` against ``W0``
(:mod:`loralab.lowrank.intruder`): the top-k singular vectors' best ``|cos|`` against all of
W0's, the intruders at each ε of :data:`~loralab.results.intruders.EPSILON_GRID` (mean per
matrix), and one matrix's similarity map per run. The analysed matrices: every block of a
model with at most :data:`ALL_BLOCKS` blocks, else the first, middle and last block (a real
model's 30 × 7 = 210 matrices would cost 210 SVDs per run; 3 blocks cost 21).

The mitigation: on the LoRA run with the most intruders, every adapted matrix's intruder
directions scaled by each λ (cut back to the run's rank, as PEFT's
``reduce_intruder_dimension``), the copy evaluated on the target and the source domain: only
evaluations. The verdict weighs the paper's three claims.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from ..lm.train import evaluate
from ..lora.targets import block_index
from ..lowrank.intruder import (
    check_intruder_args,
    intruder_cosines,
    intruder_counts,
    left_basis,
    mitigate_intruders,
    similarity_map,
)
from ..method_specs import method_spec
from ..results.finetune import ExperimentResult, RunResult
from ..results.intruders import (
    EPSILON_GRID,
    IntruderMap,
    IntruderRow,
    Intruders,
    IntruderSettings,
    LambdaPoint,
)
from .context import RunContext
from .verdicts import compared_runs, intruder_verdict, only_runs
from .workload import Workload, general_loss, layer_paths
from .workload import weight_out_in as _oi

__all__ = ["ALL_BLOCKS", "analysed_layers", "check_top_k", "intruder_study"]

ALL_BLOCKS = 4


def analysed_layers(base: nn.Module, modules: tuple[str, ...]) -> list[str]:
    """The paths of ``modules`` in the analysed blocks (module doc), in layer order."""
    paths = [p for m in modules for p in layer_paths(base, m)]
    blocks = sorted({block_index(p) for p in paths})
    if len(blocks) > ALL_BLOCKS:
        blocks = [blocks[0], blocks[len(blocks) // 2], blocks[-1]]
    keep = [p for p in paths if block_index(p) in blocks]
    return sorted(keep, key=lambda p: (block_index(p), modules.index(p.rsplit(".", 1)[-1])))


def check_top_k(base: nn.Module, target_sets: list[tuple[str, tuple[str, ...]]],
                settings: IntruderSettings) -> None:
    """``top_k`` at most the rank bound ``min(d_out, d_in)`` of every analysed matrix of the
    target sets ``[(label, module names)]``."""
    modules = tuple(dict.fromkeys(m for _, ms in target_sets for m in ms))
    for path in analysed_layers(base, modules):
        check_intruder_args(settings.top_k, shape=tuple(_oi(base.get_submodule(path)).shape))


def _studied(result: ExperimentResult) -> list[RunResult]:
    """Full fine-tuning and the LoRA / rsLoRA runs (their ΔW is ``s·B A`` on an unquantized
    base, so ``W0 + ΔW`` is the run's weight)."""
    return [r for r in result.runs if not method_spec(r.method).is_adapter
            or method_spec(r.method).sweep]


def _weight(base: nn.Module, model: nn.Module, run: RunResult, path: str) -> torch.Tensor:
    """The run's ``W = W0 + ΔW`` of ``path`` as ``(d_out, d_in)``."""
    w0 = _oi(base.get_submodule(path)).detach()
    mod = model.get_submodule(path)
    if method_spec(run.method).is_adapter:
        return w0.float() + mod.delta_weight().detach().float()
    return _oi(mod).detach()


def _rows_and_maps(result: ExperimentResult, work: Workload, models: Mapping[str, nn.Module],
                   s: IntruderSettings, layers: list[str], map_layer: str
                   ) -> tuple[list[IntruderRow], list[IntruderMap]]:
    base = work.base
    bases = {p: left_basis(_oi(base.get_submodule(p))) for p in layers}
    n0 = min(bases[map_layer].shape[1], max(4 * s.top_k, 32))
    rows, maps = [], []
    for run in _studied(result):
        mine = [p for p in layers if p.rsplit(".", 1)[-1] in run.modules] \
            if method_spec(run.method).is_adapter else layers
        counts = [intruder_counts(intruder_cosines(bases[p], _weight(base, models[run.label],
                                                                     run, p), s.top_k),
                                  (*EPSILON_GRID, s.epsilon)) for p in mine]
        mean = [sum(c[i] for c in counts) / max(1, len(counts))
                for i in range(len(EPSILON_GRID) + 1)]
        rows.append(IntruderRow(label=run.label, method=run.method, rank=run.rank,
                                targets=run.targets, matrices=len(mine),
                                epsilons=list(EPSILON_GRID), mean_counts=mean[:-1],
                                at_epsilon=mean[-1]))
        if map_layer in mine:
            sim = similarity_map(bases[map_layer],
                                 _weight(base, models[run.label], run, map_layer), s.top_k, n0)
            maps.append(IntruderMap(label=run.label, layer=map_layer,
                                    similarity=sim.float().tolist()))
    return rows, maps


def _mitigated_copy(base: nn.Module, model: nn.Module, run: RunResult, lam: float,
                    s: IntruderSettings, u0: dict[str, torch.Tensor]) -> tuple[nn.Module, int]:
    """A plain copy of the base with every adapted matrix's update mitigated at ``lam``."""
    from ..lora import lora_layers

    out, total = copy.deepcopy(base), 0
    with torch.no_grad():
        for path in lora_layers(model):
            w0 = _oi(base.get_submodule(path))
            if path not in u0:
                u0[path] = left_basis(w0)
            delta, n = mitigate_intruders(
                w0, model.get_submodule(path).delta_weight().detach(), rank=run.rank,
                top_k=min(s.top_k, min(w0.shape)), epsilon=s.epsilon, lam=lam, u0=u0[path])
            _oi(out.get_submodule(path)).add_(delta.to(w0.dtype))
            total += n
    return out, total


def _lambda_sweep(result: ExperimentResult, work: Workload, models: Mapping[str, nn.Module],
                  ctx: RunContext, s: IntruderSettings, run: RunResult) -> list[LambdaPoint]:
    """The run as trained (λ = 1) and mitigated at each λ: target and source val loss."""
    config, tc = result.config, result.config.spec.lora
    before = work.base_info.general_val_loss
    if run.general_val_loss is None or before is None:   # restored from an older resume file
        return []
    points = [LambdaPoint(label=run.label, lam=1.0, intruders=0,
                          target_val_loss=run.final_val_loss,
                          source_val_loss=run.general_val_loss,
                          forgetting=run.general_val_loss - before)]
    u0: dict[str, torch.Tensor] = {}
    for lam in (x for x in s.lambdas if x < 1.0):
        model, n = _mitigated_copy(work.base, models[run.label], run, lam, s, u0)
        target = evaluate(model, work.ft, tc.eval_batch_size, tc.eval_batches,
                          device=ctx.device, dist=ctx.dist, bf16=config.bf16)
        source = general_loss(model, work.general, config, ctx)
        points.append(LambdaPoint(label=run.label, lam=lam, intruders=n,
                                  target_val_loss=target, source_val_loss=source,
                                  forgetting=source - before))
    return points


def intruder_study(result: ExperimentResult, work: Workload, models: Mapping[str, nn.Module],
                   ctx: RunContext, settings: IntruderSettings) -> Intruders | None:
    """The module doc's analysis; ``None`` without a LoRA run. Without a source domain (a
    user's ``--model``) the counts and maps only: no λ sweep."""
    lora = [r for r in _studied(result) if r.method == "lora"]
    if not lora:
        return None
    modules = tuple(dict.fromkeys(m for _, mods in work.target_sets for m in mods))
    layers = analysed_layers(work.base, modules)
    last = work.target_sets[-1][1]
    cand = [p for p in layers if p.rsplit(".", 1)[-1] == ("q_proj" if "q_proj" in last
                                                           else last[0])]
    map_layer = cand[len(cand) // 2] if cand else layers[0]
    rows, maps = _rows_and_maps(result, work, models, settings, layers, map_layer)
    by_label = {r.label: r for r in rows}
    pick = max(lora, key=lambda r: (by_label[r.label].at_epsilon, -(r.rank or 0)))
    labels = compared_runs(result.runs)
    # An lr study shows the maps of the compared runs only. They were all made in the counting
    # pass, where each model is at hand: a second pass would rebuild lazily kept models.
    if labels is not None:
        maps = [m for m in maps if m.label in labels | {pick.label}]
    study = Intruders(top_k=settings.top_k, epsilon=settings.epsilon, layers=layers,
                      rows=rows, maps=maps,
                      lambda_sweep=_lambda_sweep(result, work, models, ctx, settings, pick)
                      if work.general is not None else [])
    compared = only_runs(study, labels)
    study.verdict = intruder_verdict(compared, any(r.method == "full" for r in compared.rows),
                                     labels)
    return study

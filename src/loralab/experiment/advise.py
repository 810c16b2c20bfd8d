"""``loralab advise``: a rank and α per module from measurement, and a check of the advice.

1. **Probe** (:func:`probe_spectra`) the experiment's base on its data (:mod:`.workload`):
   ``grad``: ``G_m = Σ_t ∂L_t/∂W_m`` over ``probe_steps`` batches at ``W0`` (no update);
   ``full``: ``ΔW_m = W_m − W0_m`` after ``probe_steps`` steps of full fine-tuning with the
   experiment's loop (:func:`loralab.lm.train.train`) and learning rate. Per target module the
   singular values ``σ_m`` of that ``(d_out, d_in)`` matrix.
2. **Allocate** (:mod:`loralab.lowrank.allocate`): at an energy threshold, each module's
   smallest rank keeping that share of ``Σ σ²``; or within a parameter budget, the ranks
   that keep the most energy. Then the count is fitted to a whole uniform rank ``r_u``
   (``Σ c_m r_m ≈ r_u Σ c_m``, ``c_m = d_in + d_out``; trimmed or grown greedily, never past
   a budget), so the check compares equal counts. α per module: ``α_m = r_m · α / r_u``, so
   every module keeps the uniform run's scale ``α/r_u``: only the ranks differ.
3. **Check** (:func:`check_advice`): two LoRA runs through the experiment's own
   :func:`~.one_run.fine_tune`, the same steps, batches and seed: the pattern, and rank
   ``r_u`` on every module.
"""

from __future__ import annotations

import copy
import time
from dataclasses import replace

import torch
from torch import nn

from ..errors import LoralabError
from ..lm.model import lm_loss
from ..lm.train import train
from ..lora.storage import out_in, stores_transposed
from ..lowrank.allocate import lora_params, ranks_for_budget, ranks_for_energy
from ..results.advice import Advice, AdviceCheck, AdviceConfig, ModuleAdvice
from ..results.finetune_config import ExperimentConfig, RunOptions, RunSpec
from .context import RunContext
from .methods import adapter_root
from .one_run import fine_tune
from .workload import Workload, load_workload

__all__ = ["advise", "allocate", "check_advice", "check_budget", "experiment_config",
           "probe_spectra"]


def experiment_config(config: AdviceConfig, rank: int = 1) -> ExperimentConfig:
    """The :class:`ExperimentConfig` the advice measures and checks with (LoRA at ``rank``
    on the one target set)."""
    return ExperimentConfig(preset=config.preset, methods=("lora",), ranks=(rank,),
                            targets=(config.targets,), seed=config.seed,
                            lora_alpha=config.lora_alpha, rslora_ranks=(),
                            data=config.data, model=config.model, steps=config.steps,
                            batch=config.batch)


def _targets(work: Workload) -> dict[str, nn.Module]:
    """The target modules by path under :func:`adapter_root` (PEFT's paths)."""
    _, names = work.target_sets[0]
    root = adapter_root(work.base)
    return {p: m for p, m in root.named_modules()
            if p.rsplit(".", 1)[-1] in names and getattr(m, "weight", None) is not None
            and m.weight.ndim == 2}


def _grad_probe(model: nn.Module, targets: dict[str, nn.Module], work: Workload,
                config: ExperimentConfig, steps: int, ctx: RunContext) -> dict:
    """``Σ_t ∂L_t/∂W_m`` over ``steps`` batches (those of steps 0.. of every run)."""
    tc = config.spec.full
    for p in targets.values():
        p.weight.requires_grad_(True)
    model.train()
    for t in range(steps):
        x, y = work.ft.batch(t, tc.batch_size, config.seed)        # (B, T)
        lm_loss(model(x.to(ctx.device)), y.to(ctx.device)).backward()
    return {p: m.weight.grad.detach() for p, m in targets.items()}


def probe_spectra(work: Workload, config: ExperimentConfig, advice: AdviceConfig,
                  ctx: RunContext) -> dict[str, torch.Tensor]:
    """Per target path the singular values (float64, descending) of the probe's matrix
    (module doc, step 1); the base is not changed."""
    model = copy.deepcopy(work.base).requires_grad_(False)
    copies = dict(adapter_root(model).named_modules())
    targets = {p: copies[p] for p in _targets(work)}            # the copy's modules
    before = {p: m.weight.detach().clone() for p, m in targets.items()}
    if advice.probe == "grad":
        mats = _grad_probe(model, targets, work, config, advice.probe_steps, ctx)
    else:
        model.requires_grad_(True)
        tc = replace(config.spec.full, steps=advice.probe_steps, eval_every=advice.probe_steps,
                     eval_batches=1, seed=config.seed)
        train(model, work.ft, tc, device=ctx.device, bf16=config.bf16)
        mats = {p: m.weight.detach() - before[p] for p, m in targets.items()}
    out = {}
    for p, m in targets.items():
        mat = out_in(mats[p], stores_transposed(m)).double().cpu()    # (d_out, d_in)
        if not bool(torch.isfinite(mat).all()):
            raise LoralabError(f"the probe's matrix of {p} holds NaN/Inf; lower the learning "
                               "rate or give fewer probe steps")
        out[p] = torch.linalg.svdvals(mat)
    return out


def allocate(spectra: dict[str, torch.Tensor], shapes: dict[str, tuple[int, int]],
             advice: AdviceConfig) -> tuple[dict[str, int], int]:
    """``(ranks, r_u)``: the ranks (module doc, step 2) and the uniform rank of the same
    count."""
    costs, ceil, whole = check_budget(shapes, advice)
    if advice.budget is not None:
        r_u = advice.budget // whole
        start = None
    else:
        start = ranks_for_energy(spectra, float(advice.energy))
        r_u = max(1, round(lora_params(start, costs) / whole))
    r_u = min(r_u, min(ceil.values()))
    return ranks_for_budget(spectra, costs, r_u * whole, ceil, start), r_u


def check_budget(shapes: dict[str, tuple[int, int]], advice: AdviceConfig
                 ) -> tuple[dict[str, int], dict[str, int], int]:
    """Refuse a budget outside ``[Σ c_m, Σ c_m · min(d_in, d_out)]`` (rank 1 everywhere to
    full rank) for these modules; return ``(c_m, max ranks, Σ c_m)``."""
    costs = {p: d_out + d_in for p, (d_out, d_in) in shapes.items()}
    ceil = {p: min(s) for p, s in shapes.items()}
    whole = sum(costs.values())                  # one uniform rank's parameters
    top = lora_params(ceil, costs)
    if advice.budget is not None and not whole <= advice.budget <= top:
        raise LoralabError(f"budget={advice.budget} is not allowed for these {len(costs)} "
                           f"modules; give {whole} (rank 1 everywhere) to {top} (full rank)")
    return costs, ceil, whole


def _module_advice(spectra: dict[str, torch.Tensor], shapes: dict[str, tuple[int, int]],
                   ranks: dict[str, int], r_u: int, alpha: float) -> list[ModuleAdvice]:
    out = []
    for p, sigma in spectra.items():
        e = sigma.pow(2)
        total = float(e.sum()) or 1.0
        out.append(ModuleAdvice(
            path=p, d_out=shapes[p][0], d_in=shapes[p][1], rank=ranks[p],
            alpha=alpha * ranks[p] / r_u, energy_kept=float(e[:ranks[p]].sum()) / total,
            top=[float(v) / total for v in e[:8]]))
    return out


def check_advice(work: Workload, config: ExperimentConfig, advice: Advice,
                 ctx: RunContext) -> AdviceCheck:
    """Train the pattern and uniform rank ``r_u`` (module doc, step 3)."""
    label, modules = work.target_sets[0]
    config = config.with_changes(ranks=(advice.uniform_rank,))
    uniform = RunSpec("lora", advice.uniform_rank, label, modules)
    pattern = replace(uniform, rank_pattern=tuple(advice.rank_pattern.items()),
                      alpha_pattern=tuple(advice.alpha_pattern.items()))
    _, u, _ = fine_tune(uniform, work, config, ctx, None, merge=False)
    _, a, _ = fine_tune(pattern, work, config, ctx, None, merge=False)
    return AdviceCheck(uniform_rank=advice.uniform_rank, uniform_params=u.trainable_params,
                       advised_params=a.trainable_params, uniform_val_loss=u.final_val_loss,
                       advised_val_loss=a.final_val_loss,
                       base_val_loss=work.base_info.finetune_val_loss,
                       steps=config.spec.lora.steps)


def _adapter_config(advice: Advice, modules: tuple[str, ...]) -> dict:
    """PEFT's ``adapter_config.json`` of the advice (loralab's :class:`AdapterConfig`)."""
    from ..lora import AdapterConfig, config_to_peft

    return config_to_peft(AdapterConfig(
        r=advice.uniform_rank, lora_alpha=advice.lora_alpha, target_modules=list(modules),
        rank_pattern=advice.rank_pattern, alpha_pattern=advice.alpha_pattern))


def advise(advice: AdviceConfig, options: RunOptions | None = None) -> Advice:
    """Probe, allocate, and (``advice.check``) check: the whole of ``loralab advise``."""
    from ..lm.dist import resolve_device

    t0 = time.perf_counter()
    options = options or RunOptions()
    ctx = RunContext(options=options, device=resolve_device(options.device))
    config = experiment_config(advice)
    work = load_workload(config, ctx)
    if config.model is not None:
        config = config.with_changes(targets=tuple(lbl for lbl, _ in work.target_sets))
    shapes = {p: tuple(out_in(m.weight, stores_transposed(m)).shape)
              for p, m in _targets(work).items()}
    check_budget(shapes, advice)                  # the model's range, before any probe
    spectra = probe_spectra(work, config, advice, ctx)
    probe_s = time.perf_counter() - t0
    ranks, r_u = allocate(spectra, shapes, advice)
    result = Advice(config=advice, modules=_module_advice(spectra, shapes, ranks, r_u,
                                                          advice.lora_alpha),
                    uniform_rank=r_u, lora_alpha=advice.lora_alpha, adapter_config={},
                    probe_wall_s=probe_s)
    result.adapter_config = _adapter_config(result, work.target_sets[0][1])
    if advice.check:
        result.check = check_advice(work, config, result, ctx)
    result.wall_s = time.perf_counter() - t0
    return result

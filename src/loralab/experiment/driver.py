"""The experiment: full fine-tuning against LoRA at several ranks, on one tiny causal LM.

1. Pretrain a :class:`~loralab.lm.model.TinyLM` on plain English (once: the base is cached as
   safetensors under a key made from its config, see :meth:`ExperimentConfig.base_key`).
2. Fine-tune copies of that base on Pig Latin (:mod:`loralab.lm.corpus`): full fine-tuning
   (every weight trains) and LoRA (``W = W0 + (α/r)·B A`` on the chosen projections, all else
   frozen) at every rank and target set, plus rsLoRA (``α/√r``) at the larger ranks. Every run
   sees the same batches in the same order and starts from the same seed.
3. Check and explain (:mod:`loralab.experiment.analysis`): merged LoRA gives the same logits;
   the full update ΔW_full is nearly low-rank (its spectrum, the rank for 90 % of its energy,
   and the val loss of ``W0 + ΔW_full`` truncated to rank r beside LoRA trained at rank r); the
   LoRA paper's amplification factor; α/r against α/√r; sample generations.

``run_experiment(config, options, out_dir=...)`` does it all and writes the outputs
(:func:`loralab.experiment.outputs.write_outputs`); without ``out_dir`` it only computes.
``out_dir`` follows the one output rule of :mod:`loralab.fileio` (a manifest of what the run
wrote, a lock, the earlier run's files removed). Under ``torchrun`` every rank runs the same
code with DDP and only rank 0 writes. A Ctrl-C during training saves a checkpoint in the
resume folder (:mod:`.resume`; pretraining: beside the cached base); the same command
resumes. The resume state records the SHA-256 of the base it was trained on and is discarded
when the base changed (:mod:`.base`).
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import nn

from ..errors import LoralabError
from ..fileio import OutputFolder, output_folder, require_finite
from ..lm.dist import DistContext, resolve_device
from ..method_specs import METHOD_SPECS, full_run, method_spec
from ..peak import measure_matmul_peak
from ..results.finetune import Analysis, ExperimentResult, MergeCheck, RunResult
from ..results.intruders import IntruderSettings
from ..results.study_plan import StudyConfig
from ..threads import SMALL_NUMEL, largest_matrix_numel, run_layout
from .analysis import analyse
from .base import default_cache_dir, load_or_pretrain_base
from .config import ExperimentConfig, RunOptions, RunSpec, check_plan, plan_runs
from .context import Progress, RunContext
from .direction import magnitude_direction
from .floor import experiment_floor
from .forgetting import forgetting_study
from .intruders import check_top_k, intruder_study
from .jobs import at_once, can_fork, run_side_by_side
from .methods import adapter_root, plain_adapter
from .one_run import fine_tune
from .outputs import write_outputs
from .resume import COMMAND, STATE, ResumeFolder
from .run_models import ConvertedModels, RunModels
from .studies import model_widths, study_result
from .workload import Workload, load_workload

__all__ = [
    "default_cache_dir",
    "load_or_pretrain_base",
    "run_experiment",
    "total_steps",
]


def total_steps(config: ExperimentConfig, study: StudyConfig | None = None) -> int:
    """Optimizer steps of the whole experiment (pretraining included), for a progress bar;
    with ``study``: of the study's runs."""
    if study is not None:
        config = study.prepare(config)
    spec = config.spec
    plan = plan_runs(config) if study is None else study.runs(config, _sets(config))
    return spec.pretrain.steps + sum(
        (spec.lora if r.method_spec.is_adapter else spec.full).steps for r in plan)


def _sets(config: ExperimentConfig) -> list[tuple[str, tuple[str, ...]]]:
    """The config's target sets as a plan sees them before the model is loaded."""
    from ..results.presets import parse_targets

    return ([parse_targets(t) for t in config.targets] if config.model is None
            else [(t, ()) for t in config.targets])


def _widths(study: StudyConfig, config: ExperimentConfig, work: Workload
            ) -> tuple[dict[str, int] | None, int | None]:
    """A placement study's set widths and rank bound on a ``--model`` (its layers' shapes);
    ``(None, None)`` otherwise (the tiny LM's follow from its config)."""
    if study.name != "placement" or config.model is None:
        return None, None
    return model_widths(work.base, work.target_sets)


def _steps_to_full(runs: list[RunResult]) -> None:
    """Each run's first val step at or below full fine-tuning's final val loss (``None``
    when it never gets there, or without a full run)."""
    full = full_run(runs)
    if full is None:
        return
    for r in runs:
        r.steps_to_full_loss = next((s for s, v in zip(r.val_steps, r.val_loss, strict=True)
                                     if v <= full.final_val_loss), None)


def run_experiment(config: ExperimentConfig | None = None, options: RunOptions | None = None,
                   *, out_dir: str | Path | None = None, dist: DistContext | None = None,
                   progress: Progress | None = None,
                   on_plan: Callable[[list[str]], None] | None = None,
                   study: StudyConfig | None = None,
                   intruders: IntruderSettings | None = None) -> ExperimentResult:
    """Run the whole experiment ``config`` as ``options`` say (default: one after another on
    the default device); with ``out_dir`` also write every output there (rank 0).

    The plan is checked first (:func:`loralab.experiment.config.check_plan`), ``out_dir`` is
    claimed (:func:`loralab.fileio.output_folder`: refused if it holds files another command
    or the user wrote, or another run is writing there) and the cache is checked before any
    training (:func:`loralab.experiment.base.check_cache`). ``progress(label, steps)`` is
    called as optimizer steps complete (for a progress bar whose total is
    :func:`total_steps`); ``on_plan(lines)`` once the data and base are loaded and the
    memory estimate passed (rank 0). ``study``: run that study's runs
    (:class:`~loralab.results.study_plan.StudyConfig`) instead of the experiment's, and fill
    ``result.study`` (:func:`loralab.experiment.studies.study_result`). ``intruders``: the intruder
    analysis's top-k, ε and λs (default PEFT's: 10, 0.5, 0.75 and below; :mod:`.intruders`).
    Returns the
    :class:`ExperimentResult`.
    """
    from .base import check_cache

    config = config or ExperimentConfig()
    if study is not None:
        config = study.prepare(config)
    options = options or RunOptions()
    intruders = intruders or IntruderSettings()
    check_plan(config, options)
    if config.model is None:             # every tiny-LM matrix has rank bound d_model
        from ..lowrank.intruder import check_intruder_args

        d = config.spec.model.d_model
        check_intruder_args(intruders.top_k, shape=(d, d))
    dist = dist or DistContext()
    ctx = RunContext(options=options, device=resolve_device(options.device, dist.local_rank),
                     dist=dist, progress=progress)
    check_cache(config, options)
    claim = (output_folder(out_dir, COMMAND, state=(STATE,))
             if out_dir is not None and dist.is_main else contextlib.nullcontext(None))
    with claim as folder:
        dist.barrier()
        out = Path(out_dir) if out_dir is not None else None
        return _run(config, ctx, out, folder, on_plan, study, intruders)


def memory_plan(config: ExperimentConfig, work: Workload, device: torch.device
                ) -> list[dict]:
    """Estimate each kind of run's memory (weights, grads, AdamW state, activations:
    :func:`loralab.lm.memory.estimate_run_memory`), refuse the plan when one will not fit
    ``device`` (one line saying what would); return each estimate as a dict (``total`` and
    its parts in bytes, ``describe``: one line for the plan)."""
    from ..lm.memory import NF4_BITS, check_fits, estimate_run_memory

    spec, model = config.spec, adapter_root(work.base)
    modules = tuple(dict.fromkeys(m for _, mods in work.target_sets for m in mods))
    rank = max((*config.ranks, *(config.rslora_ranks or ())))
    kinds = [METHOD_SPECS[k] for k in dict.fromkeys(
        s.estimate_as for m, s in METHOD_SPECS.items() if m in config.methods)]
    estimates = [estimate_run_memory(
        model, method=k.name, batch_size=(spec.lora if k.is_adapter else spec.full).batch_size,
        seq_len=work.ft.block_size, targets=modules if k.is_adapter else (),
        lora_rank=rank if k.is_adapter else 0, bf16=config.bf16, device=device.type,
        quantized_base_bits=NF4_BITS if k.quantizes else None) for k in kinds]
    check_fits(estimates, device=device, batch_flag="--batch")
    return [{**asdict(e), "rank": rank if method_spec(e.method).is_adapter else None,
             "total": e.total, "describe": e.describe()} for e in estimates]


def _layout(work: Workload, memory: list[dict], ctx: RunContext, n: int) -> tuple[int, int]:
    """``(processes, threads each)`` for the ``n`` runs still to train: side by side
    (:mod:`.jobs`) on a CPU in one process group (no torchrun), capped by memory; else
    ``(1, 0)`` (one after another, at the threads already set)."""
    from ..lm.memory import runs_that_fit

    opts, device = ctx.options, ctx.device
    if opts.jobs == 1 or n < 2 or device.type != "cpu" or ctx.dist.world_size > 1 \
            or not can_fork():
        return 1, 0
    small = largest_matrix_numel(adapter_root(work.base)) <= SMALL_NUMEL
    jobs, threads = run_layout(n, small=small, jobs=opts.jobs, threads=opts.threads)
    fit = runs_that_fit([m["total"] for m in memory], device)
    if fit is not None and jobs > max(1, fit):
        if opts.jobs:
            raise LoralabError(f"--jobs {opts.jobs} is not allowed here: {jobs} runs at once "
                               f"need {jobs} × {max(m['total'] for m in memory):,} bytes and "
                               f"{max(1, fit)} fit in this machine's memory; give --jobs "
                               f"{max(1, fit)} or fewer")
        jobs = max(1, fit)
    return (jobs, threads) if jobs > 1 else (1, 0)


def _cost(config: ExperimentConfig) -> Callable[[RunSpec], float]:
    """A run's relative cost, for handing out the longest first: its steps × its step time
    relative to a full step (LoRA ≈ 0.75 + 0.04 per target module, × the method's
    ``step_cost``: DoRA forms B A too)."""
    spec = config.spec

    def cost(run: RunSpec) -> float:
        if not run.method_spec.is_adapter:
            return float(spec.full.steps)
        per = 0.75 + 0.04 * len(run.modules)
        return spec.lora.steps * per * run.method_spec.step_cost

    return cost


def _train_side_by_side(pending: list[RunSpec], layout: tuple[int, int], work: Workload,
                        config: ExperimentConfig, ctx: RunContext, resume: ResumeFolder
                        ) -> set[str]:
    """Train the unfinished runs ``pending`` ``layout[0]`` at a time into ``resume``; return
    their labels (restored afterwards without a second progress update)."""
    jobs, threads = layout
    dtype = torch.bfloat16 if config.bf16 else torch.float32
    # The peak each process gets while all of them multiply at once: what a run can reach.
    peak = statistics.median(at_once(
        lambda: measure_matmul_peak(dtype=dtype, device=ctx.device, refresh=True),
        jobs=jobs, threads=threads))
    shared = replace(ctx, peak_flops=peak)

    def work_one(run: RunSpec, prog: Progress | None) -> None:
        fine_tune(run, work, config, shared.with_progress(prog), resume)

    run_side_by_side(pending, work_one, jobs=jobs, threads=threads, progress=ctx.progress,
                     cost=_cost(config))
    return {r.label for r in pending}


def _analyse(result: ExperimentResult, work: Workload, models: Mapping[str, nn.Module],
             ctx: RunContext, checks: dict[str, MergeCheck], intruders: IntruderSettings
             ) -> Analysis:
    """Every analysis of the trained ``models``: :func:`.analysis.analyse`, DoRA's view, the
    forgetting and intruder studies (evaluations only)."""
    a = analyse(result, work, models, ctx, merge_checks=checks)
    a.magnitude_direction = magnitude_direction(result.config, result.runs, work.target_sets)
    result.analysis = a                            # the studies read the analysis so far
    a.forgetting = forgetting_study(result, work.source)
    a.intruders = intruder_study(result, work, models, ctx, intruders)
    return a


def _drop_unused(kind: type[BaseException] | None, resume: ResumeFolder) -> bool:
    """On an error (not a Ctrl-C, which keeps what a rerun resumes): remove a resume state
    that holds nothing to resume. Never swallows the error."""
    if kind is not None and issubclass(kind, Exception):
        resume.drop_if_unused()
    return False


def _open_resume(out: Path | None, config: ExperimentConfig, work: Workload,
                 dist: DistContext, stack: contextlib.ExitStack) -> ResumeFolder | None:
    """The experiment's resume folder inside ``out`` (``None`` without one), opened; on an
    error it goes again when it holds nothing to resume (:func:`_drop_unused`)."""
    if out is None:
        return None
    resume = ResumeFolder.of(out, config).open(work.base_info.sha256, dist)
    if dist.is_main:
        stack.push(lambda kind, exc, tb: _drop_unused(kind, resume))
    return resume


def _run(config: ExperimentConfig, ctx: RunContext, out: Path | None,
         folder: OutputFolder | None, on_plan: Callable[[list[str]], None] | None,
         study: StudyConfig | None = None, intruders: IntruderSettings | None = None
         ) -> ExperimentResult:
    t0, dist = time.perf_counter(), ctx.dist
    work = load_workload(config, ctx)
    check_top_k(work.base, work.target_sets, intruders or IntruderSettings())
    plan_lines = [f"data: {work.data_info['summary']}"] if work.data_info else []
    memory = memory_plan(config, work, ctx.device)
    plan_lines += [f"memory estimate: {m['describe']}" for m in memory]
    if config.model is not None:        # the labels of the model's own module names
        config = config.with_changes(targets=tuple(label for label, _ in work.target_sets))
    plan = (plan_runs(config, work.target_sets) if study is None
            else study.runs(config, work.target_sets, *_widths(study, config, work)))
    with contextlib.ExitStack() as stack:
        resume = _open_resume(out, config, work, dist, stack)
        pending = [r for r in plan if resume is None or not resume.done(r).is_file()]
        layout = _layout(work, memory, ctx, len(pending))
        if layout[0] > 1:
            plan_lines.append(f"runs: {len(pending)} to train, {layout[0]} side by side "
                              f"({layout[1]} thread{'s' if layout[1] > 1 else ''} each)")
        if on_plan is not None and dist.is_main:
            on_plan(plan_lines)
        fresh: set[str] = set()
        if layout[0] > 1:
            if resume is None:                     # the runs meet in a folder all can write
                resume = ResumeFolder(Path(stack.enter_context(tempfile.TemporaryDirectory())))
            fresh = _train_side_by_side(pending, layout, work, config, ctx, resume)
        models = RunModels(work.base, config, len(plan))
        runs: list[RunResult] = []
        checks: dict[str, MergeCheck] = {}
        for run in plan:
            model, result, check = fine_tune(
                run, work, config, ctx.with_progress(None) if run.label in fresh else ctx,
                resume)
            models.add(run, model)
            del model                                  # lazily kept: its tensors only
            runs.append(result)
            if check is not None:
                checks[run.label] = check
    _steps_to_full(runs)
    result = ExperimentResult(config=config, options=ctx.options, device=str(ctx.device),
                              world_size=dist.world_size, base=work.base_info, runs=runs,
                              data=work.data_info, memory=memory,
                              out_dir=str(out) if out is not None else None)
    result.analysis = _analyse(result, work, models, ctx, checks, intruders)
    result.wall_s = time.perf_counter() - t0
    result.floor = experiment_floor(result, work, adapter_root(work.base),
                                    layout[0] * dist.world_size,
                                    frozenset(r.label for r in plan) - {r.label for r in pending})
    if study is not None:
        result.study = study_result(study, result)
    require_finite(result.to_dict(), "the experiment's", "a run diverged or overflowed: "
                   "lower the learning rate")                  # never printed nor saved
    if folder is not None and out is not None:
        _write(result, work, models, plan, folder, out)
    dist.barrier()
    return result


def _write(result: ExperimentResult, work: Workload, models: RunModels, plan: list[RunSpec],
           folder: OutputFolder, out: Path) -> None:
    """Every output into ``folder``'s staging copy, committed; the resume state dropped.
    Adapters are read one run at a time (a PiSSA / OLoRA run as a plain LoRA)."""
    config, staged = result.config, folder.staging()
    by_label = {r.label: r for r in plan}
    write_outputs(result, ConvertedModels(models, lambda label, m: plain_adapter(
        work.base, by_label[label], config, m)), staged)
    folder.commit(staged)
    ResumeFolder.of(out, config).drop()

"""The experiment: full fine-tuning against LoRA at several ranks, on one tiny causal LM.

1. Pretrain a :class:`~loralab.tinylm.TinyLM` on plain English (once: the base is cached as
   safetensors under a key made from its config, see :meth:`ExperimentConfig.base_key`).
2. Fine-tune copies of that base on Pig Latin (:mod:`loralab.corpus`): full fine-tuning
   (every weight trains) and LoRA (``W = W0 + (α/r)·B A`` on the chosen projections, all else
   frozen) at every rank and target set, plus rsLoRA (``α/√r``) at the larger ranks. Every run
   sees the same batches in the same order and starts from the same seed.
3. Check and explain (:mod:`loralab.finetune_analysis`): merged LoRA gives the same logits;
   the full update ΔW_full is nearly low-rank (its spectrum, the rank for 90 % of its energy,
   and the val loss of ``W0 + ΔW_full`` truncated to rank r beside LoRA trained at rank r); the
   LoRA paper's amplification factor; α/r against α/√r; sample generations.

``run_experiment(config, out_dir=...)`` does it all and writes the outputs
(:func:`loralab.experiment.outputs.write_outputs`); without ``out_dir`` it only computes.
``out_dir`` follows the one output rule of :mod:`loralab.fileio` (a manifest of what the run
wrote, a lock, the earlier run's files removed). Under ``torchrun`` every rank runs the same
code with DDP and only rank 0 writes. A Ctrl-C during training saves a checkpoint in
``<out>/.resume/<key>/`` (pretraining: beside the cached base); the same command resumes.
The resume state records the SHA-256 of the base it was trained on and is discarded when the
base changed (:mod:`.base`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from ..errors import LoralabError
from ..fileio import OutputFolder, atomic_write_text, output_folder, require_finite
from ..lm.dist import DistContext, resolve_device
from ..method_specs import METHOD_SPECS, full_run, method_spec
from ..peak import measure_matmul_peak
from ..threads import SMALL_NUMEL, largest_matrix_numel, run_layout
from .analysis import analyse
from .base import default_cache_dir, load_or_pretrain_base
from .config import ExperimentConfig, RunSpec, plan_runs
from .direction import magnitude_direction
from .jobs import at_once, can_fork, run_side_by_side
from .methods import adapter_root, plain_adapter
from .one_run import done_path, fine_tune
from .outputs import write_outputs
from .results import ExperimentResult, MergeCheck, RunResult
from .workload import Workload, load_workload

__all__ = [
    "default_cache_dir",
    "load_or_pretrain_base",
    "run_experiment",
    "total_steps",
]

Progress = Callable[[str, int], None]   # (what is running, steps just completed)
STATE = ".resume"                       # the resume state's folder inside --out
_log = logging.getLogger("loralab")


def total_steps(config: ExperimentConfig) -> int:
    """Optimizer steps of the whole experiment (pretraining included), for a progress bar."""
    spec = config.spec
    return spec.pretrain.steps + sum(
        (spec.lora if r.method_spec.is_adapter else spec.full).steps for r in plan_runs(config))


def _steps_to_full(runs: list[RunResult]) -> None:
    """Each run's first val step at or below full fine-tuning's final val loss (``None``
    when it never gets there, or without a full run)."""
    full = full_run(runs)
    if full is None:
        return
    for r in runs:
        r.steps_to_full_loss = next((s for s, v in zip(r.val_steps, r.val_loss, strict=True)
                                     if v <= full.final_val_loss), None)


def _resume_dir(out: Path, config: ExperimentConfig, base_sha: str, dist: DistContext) -> Path:
    """``<out>/.resume/<key>``, stamped with the SHA-256 of the base its runs trained on; a
    state stamped with another base is stale (the base was rebuilt) and is discarded."""
    state = out / STATE / config.key()
    stamp = state / "base.json"
    if dist.is_main:
        if stamp.exists():
            try:
                old = json.loads(stamp.read_text(encoding="utf-8")).get("base_sha256")
            except (OSError, ValueError, AttributeError):
                old = None
            if old != base_sha:
                _log.warning("loralab: the resume state %s was trained on another base (it was "
                             "rebuilt); discarding it", state)
                shutil.rmtree(state)
        state.mkdir(parents=True, exist_ok=True)
        if not stamp.exists():
            atomic_write_text(stamp, json.dumps({"base_sha256": base_sha}) + "\n")
    dist.barrier()
    return state


def _drop_resume(out: Path, config: ExperimentConfig) -> None:
    """Remove this experiment's resume state (its outputs are written)."""
    shutil.rmtree(out / STATE / config.key(), ignore_errors=True)
    if (out / STATE).is_dir() and not any((out / STATE).iterdir()):
        (out / STATE).rmdir()


def run_experiment(config: ExperimentConfig | None = None, *, out_dir: str | Path | None = None,
                   dist: DistContext | None = None, progress: Progress | None = None,
                   on_plan: Callable[[list[str]], None] | None = None) -> ExperimentResult:
    """Run the whole experiment; with ``out_dir`` also write every output there (rank 0).

    ``out_dir`` is claimed first (:func:`loralab.fileio.output_folder`: refused if it holds
    files another command or the user wrote, or another run is writing there); the cache is
    checked before any training (:func:`loralab.experiment.base.check_cache`).
    ``progress(label, steps)`` is called as optimizer steps complete (for a progress bar
    whose total is :func:`total_steps`); ``on_plan(lines)`` once the data and base are
    loaded and the memory estimate passed (rank 0). Returns the :class:`ExperimentResult`.
    """
    from .base import check_cache

    config = config or ExperimentConfig()
    dist = dist or DistContext()
    device = resolve_device(config.device, dist.local_rank)
    check_cache(config)
    claim = (output_folder(out_dir, "finetune", state=(STATE,))
             if out_dir is not None and dist.is_main else contextlib.nullcontext(None))
    with claim as folder:
        dist.barrier()
        out = Path(out_dir) if out_dir is not None else None
        return _run(config, out, folder, dist=dist, device=device, progress=progress,
                    on_plan=on_plan)


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


def _layout(config: ExperimentConfig, work: Workload, memory: list[dict],
            device: torch.device, dist: DistContext, n: int) -> tuple[int, int]:
    """``(processes, threads each)`` for the ``n`` runs still to train: side by side
    (:mod:`.jobs`) on a CPU in one process group (no torchrun), capped by memory; else
    ``(1, 0)`` (one after another, at the threads already set)."""
    from ..lm.memory import runs_that_fit

    if config.jobs == 1 or n < 2 or device.type != "cpu" or dist.world_size > 1 \
            or not can_fork():
        return 1, 0
    small = largest_matrix_numel(adapter_root(work.base)) <= SMALL_NUMEL
    jobs, threads = run_layout(n, small=small, jobs=config.jobs, threads=config.threads)
    fit = runs_that_fit([m["total"] for m in memory], device)
    if fit is not None and jobs > max(1, fit):
        if config.jobs:
            raise LoralabError(f"--jobs {config.jobs} is not allowed here: {jobs} runs at once "
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
                        config: ExperimentConfig, state_dir: Path, *, device: torch.device,
                        dist: DistContext, progress: Progress | None) -> set[str]:
    """Train the unfinished runs ``pending`` ``layout[0]`` at a time into ``state_dir``;
    return their labels (restored afterwards without a second progress update)."""
    jobs, threads = layout
    dtype = torch.bfloat16 if config.bf16 else torch.float32
    # The peak each process gets while all of them multiply at once: what a run can reach.
    peak = statistics.median(at_once(
        lambda: measure_matmul_peak(dtype=dtype, device=device, refresh=True),
        jobs=jobs, threads=threads))

    def work_one(run: RunSpec, prog: Progress | None) -> None:
        fine_tune(run, work.base, work.ft, config, device=device, dist=dist,
                  state_dir=state_dir, base_sha=work.base_info.sha256, progress=prog,
                  sets=work.target_sets, peak_flops=peak)

    run_side_by_side(pending, work_one, jobs=jobs, threads=threads, progress=progress,
                     cost=_cost(config))
    return {r.label for r in pending}


def _run(config: ExperimentConfig, out: Path | None, folder: OutputFolder | None, *,
         dist: DistContext, device: torch.device, progress: Progress | None,
         on_plan: Callable[[list[str]], None] | None = None) -> ExperimentResult:
    t0 = time.perf_counter()
    work = load_workload(config, device=device, dist=dist, progress=progress)
    plan_lines = [f"data: {work.data_info['summary']}"] if work.data_info else []
    memory = memory_plan(config, work, device)
    plan_lines += [f"memory estimate: {m['describe']}" for m in memory]
    if config.model is not None:        # the labels of the model's own module names
        config = config.with_changes(targets=tuple(label for label, _ in work.target_sets))
    base, base_info, ft = work.base, work.base_info, work.ft
    plan = plan_runs(config, work.target_sets)
    with contextlib.ExitStack() as stack:
        state_dir = _resume_dir(out, config, base_info.sha256, dist) if out is not None \
            else None
        pending = [r for r in plan if state_dir is None or not done_path(state_dir, r).is_file()]
        layout = _layout(config, work, memory, device, dist, len(pending))
        if layout[0] > 1:
            plan_lines.append(f"runs: {len(pending)} to train, {layout[0]} side by side "
                              f"({layout[1]} thread{'s' if layout[1] > 1 else ''} each)")
        if on_plan is not None and dist.is_main:
            on_plan(plan_lines)
        fresh: set[str] = set()
        if layout[0] > 1:
            if state_dir is None:                  # the runs meet in a folder all can write
                state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            fresh = _train_side_by_side(pending, layout, work, config, state_dir,
                                        device=device, dist=dist, progress=progress)
        models: dict[str, nn.Module] = {}
        runs: list[RunResult] = []
        checks: dict[str, MergeCheck] = {}
        for run in plan:
            model, result, check = fine_tune(
                run, base, ft, config, device=device, dist=dist, state_dir=state_dir,
                base_sha=base_info.sha256, progress=None if run.label in fresh else progress,
                sets=work.target_sets)
            models[run.label] = model.eval()
            runs.append(result)
            if check is not None:
                checks[run.label] = check
    _steps_to_full(runs)
    result = ExperimentResult(config=config, device=str(device), world_size=dist.world_size,
                              base=base_info, runs=runs, data=work.data_info, memory=memory,
                              out_dir=str(out) if out is not None else None)
    result.analysis = analyse(result, base, models, ft, work.tokenizer, device=device,
                              dist=dist, task=work.task, target_sets=work.target_sets,
                              merge_checks=checks)
    result.analysis.magnitude_direction = magnitude_direction(config, runs, work.target_sets)
    result.wall_s = time.perf_counter() - t0
    require_finite(result.to_dict(), "the experiment's", "a run diverged or overflowed: "
                   "lower the learning rate")                  # never printed nor saved
    if folder is not None and out is not None:
        staged = folder.staging()
        write_outputs(result, {r.label: plain_adapter(base, r, config, models[r.label])
                               for r in plan}, staged)
        folder.commit(staged)
        _drop_resume(out, config)
    dist.barrier()
    return result

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
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import nn

from ..errors import LoralabError
from ..fileio import OutputFolder, atomic_write_text, output_folder, require_finite
from ..lm.checkpoint import load_weights, non_finite, save_weights
from ..lm.corpus import LMData
from ..lm.dist import DistContext, resolve_device
from ..lm.train import TrainConfig, TrainResult, evaluate, train
from .analysis import analyse
from .base import default_cache_dir, load_or_pretrain_base
from .config import ADAPTER_METHODS, QUANT_METHODS, ExperimentConfig, RunSpec, plan_runs
from .direction import DirectionTracker, magnitude_direction, tracked_runs
from .methods import adapter_root, build_run_model, param_groups, plain_adapter
from .outputs import write_outputs
from .results import ExperimentResult, RunResult
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
        (spec.full if r.method == "full" else spec.lora).steps for r in plan_runs(config))


def _with_seed(tc: TrainConfig, seed: int) -> TrainConfig:
    return replace(tc, seed=seed)


def _result(run: RunSpec, res: TrainResult, wall: float, model: nn.Module) -> RunResult:
    from ..lora import base_weight_bytes, lora_layers

    layers = list(lora_layers(model).values())
    return RunResult(
        label=run.label, method=run.method, rank=run.rank, targets=run.targets,
        modules=list(run.modules), rslora=run.rslora,
        scaling=layers[0].scaling[layers[0].active_adapter] if layers else None,
        trainable_params=res.trainable_params, total_params=res.total_params,
        final_val_loss=res.final_val_loss, step_time_s=res.step_time_s,
        tokens_per_s=res.tokens_per_s, flops_per_s=res.flops_per_s, mfu=res.mfu,
        optimizer_state_bytes=res.optimizer_state_bytes,
        peak_memory_bytes=res.peak_memory_bytes, peak_memory_kind=res.peak_memory_kind,
        wall_s=wall, val_steps=res.val_steps, val_loss=res.val_loss,
        train_loss=res.train_loss, resumed_from=res.resumed_from,
        base_weight_bytes=base_weight_bytes(model))


def _restore(run: RunSpec, model: nn.Module, done: Path, base_sha: str) -> RunResult:
    """Load a finished run's weights from its resume file, after checking it fits."""
    state = done.parent
    advice = f"delete the resume folder {str(state)!r} and rerun to train it again"
    tensors, meta = load_weights(done, what="resume file", advice=advice)
    trainable = dict((n, p) for n, p in model.named_parameters() if p.requires_grad)
    try:
        result = RunResult(**meta["result"])
        ok = set(tensors) == set(trainable) and all(
            tensors[n].shape == p.shape for n, p in trainable.items())
    except (KeyError, TypeError):
        ok = False
    if not ok or meta.get("base_sha256") != base_sha:
        why = "does not fit" if not ok else "was trained on another base than"
        raise LoralabError(f"resume file {str(done)!r} {why} run {run.label}; {advice}")
    bad = non_finite(tensors)
    if bad is not None:
        raise LoralabError(f"resume file {str(done)!r} holds {bad[1]} NaN/Inf values (in "
                           f"{bad[0]}); {advice}")
    with torch.no_grad():
        for n, p in trainable.items():
            p.copy_(tensors[n])
    return result


def _fine_tune(run: RunSpec, base: nn.Module, ft: LMData, config: ExperimentConfig, *,
               device: torch.device, dist: DistContext, state_dir: Path | None,
               base_sha: str, progress: Progress | None,
               sets: list[tuple[str, tuple[str, ...]]] | None = None
               ) -> tuple[nn.Module, RunResult]:
    """Train one run, or restore it when ``state_dir`` says it already finished."""
    spec = config.spec
    tc = _with_seed(spec.full if run.method == "full" else spec.lora, config.seed)
    model = build_run_model(base, run, config)
    done = state_dir / f"{run.label}.done.safetensors" if state_dir else None
    if done is not None and dist.broadcast_flag(done.is_file(), device):
        result = _restore(run, model, done, base_sha)
        if progress:
            progress(f"{run.label} (done before)", tc.steps)
        return model, result
    _checkpointing(model, config.grad_checkpointing)
    dist.shard(model, device)                       # FSDP: before the optimizer is built
    tracker = None if dist.sharded else _tracker(run, model, base, config, tc, sets)
    initial = evaluate(model, ft, tc.eval_batch_size, tc.eval_batches, device=device,
                       dist=dist, bf16=config.bf16)

    def on_step(step: int, _loss: float) -> None:
        if tracker is not None:
            tracker(step)
        if progress:
            progress(run.label, 1)

    t0 = time.perf_counter()
    try:
        res = train(model, ft, tc, device=device, dist=dist, bf16=config.bf16,
                    checkpoint=str(state_dir / f"{run.label}.ckpt")
                    if state_dir and not dist.sharded else None,
                    run_key=f"{config.key()}:{base_sha[:16]}:{run.label}", on_step=on_step,
                    param_groups=param_groups(model, run, tc))
    except LoralabError as exc:
        raise LoralabError(f"run {run.label}: {exc}") from None
    wall = time.perf_counter() - t0
    if dist.sharded:
        model = _unshard(model, base, run, config, dist, device)
    result = _result(run, res, wall, model)
    result.initial_val_loss = initial
    result.direction_trace = tracker.points if tracker is not None else []
    if done is not None and dist.is_main:
        save_weights(done, {n: p for n, p in model.named_parameters() if p.requires_grad},
                     {"result": asdict(result), "base_sha256": base_sha})
    return model, result


def _checkpointing(model: nn.Module, on: bool) -> None:
    """Gradient checkpointing on ``model`` (the tiny LM's, or transformers' own)."""
    if not on:
        return
    enable = getattr(getattr(model, "hf", model), "gradient_checkpointing_enable", None)
    if not callable(enable):
        raise LoralabError(f"--grad-checkpointing is not allowed for {type(model).__name__}; "
                           "it has no gradient_checkpointing_enable")
    enable()


def _unshard(model: nn.Module, base: nn.Module, run: RunSpec, config: ExperimentConfig,
             dist: DistContext, device: torch.device) -> nn.Module:
    """An FSDP run's trained parameters gathered (:func:`loralab.lm.fsdp.full_trainable_state`)
    into a plain copy on every rank, for the analysis and the outputs."""
    import torch.distributed

    from ..lm.fsdp import full_trainable_state, load_trainable_state

    state = [full_trainable_state(model)]          # full tensors on rank 0, {} elsewhere
    torch.distributed.broadcast_object_list(state, src=0)
    twin = build_run_model(base, run, config)
    load_trainable_state(twin, state[0])
    return twin.to(device).eval()


def _tracker(run: RunSpec, model: nn.Module, base: nn.Module, config: ExperimentConfig,
             tc: TrainConfig, sets: list[tuple[str, tuple[str, ...]]] | None
             ) -> DirectionTracker | None:
    """DoRA's magnitude/direction tracker when ``run`` is one of the traced runs."""
    labels, _, layers = tracked_runs(config, base, sets)
    if run.label not in labels:
        return None
    return DirectionTracker(model, base, layers, every=tc.eval_every, last=tc.steps)


def _steps_to_full(runs: list[RunResult]) -> None:
    """Each run's first val step at or below full fine-tuning's final val loss (``None``
    when it never gets there, or without a full run)."""
    full = next((r for r in runs if r.method == "full"), None)
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
    methods = set(config.methods)
    kinds = (["full"] if "full" in methods else []) + (
        ["lora"] if (ADAPTER_METHODS - QUANT_METHODS) & methods else []) + (
        ["qlora"] if QUANT_METHODS & methods else [])
    estimates = [estimate_run_memory(
        model, method=k, batch_size=(spec.full if k == "full" else spec.lora).batch_size,
        seq_len=work.ft.block_size, targets=modules if k != "full" else (),
        lora_rank=rank if k != "full" else 0, bf16=config.bf16, device=device.type,
        quantized_base_bits=NF4_BITS if k == "qlora" else None) for k in kinds]
    check_fits(estimates, device=device, batch_flag="--batch")
    return [{**asdict(e), "rank": rank if e.method != "full" else None, "total": e.total,
             "describe": e.describe()} for e in estimates]


def _run(config: ExperimentConfig, out: Path | None, folder: OutputFolder | None, *,
         dist: DistContext, device: torch.device, progress: Progress | None,
         on_plan: Callable[[list[str]], None] | None = None) -> ExperimentResult:
    t0 = time.perf_counter()
    work = load_workload(config, device=device, dist=dist, progress=progress)
    plan_lines = [f"data: {work.data_info['summary']}"] if work.data_info else []
    memory = memory_plan(config, work, device)
    plan_lines += [f"memory estimate: {m['describe']}" for m in memory]
    if on_plan is not None and dist.is_main:
        on_plan(plan_lines)
    if config.model is not None:        # the labels of the model's own module names
        config = config.with_changes(targets=tuple(label for label, _ in work.target_sets))
    base, base_info, ft = work.base, work.base_info, work.ft
    state_dir = _resume_dir(out, config, base_info.sha256, dist) if out is not None else None
    models: dict[str, nn.Module] = {}
    runs: list[RunResult] = []
    plan = plan_runs(config, work.target_sets)
    for run in plan:
        model, result = _fine_tune(run, base, ft, config, device=device, dist=dist,
                                   state_dir=state_dir, base_sha=base_info.sha256,
                                   progress=progress, sets=work.target_sets)
        model.eval()
        models[run.label] = model
        runs.append(result)
    _steps_to_full(runs)
    result = ExperimentResult(config=config, device=str(device), world_size=dist.world_size,
                              base=base_info, runs=runs, data=work.data_info, memory=memory,
                              out_dir=str(out) if out is not None else None)
    result.analysis = analyse(result, base, models, ft, work.tokenizer, device=device,
                              dist=dist, task=work.task, target_sets=work.target_sets)
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

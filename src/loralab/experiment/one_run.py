"""One run of the experiment: train it (or restore it when it finished before), check it.

:func:`fine_tune` builds the run's model from the base (:func:`.methods.build_run_model`),
trains it (:func:`loralab.lm.train.train`, with a Ctrl-C checkpoint in the resume folder),
makes a LoRA run's merge check (:func:`.analysis.merge_check`) and leaves the run in the
resume folder (:meth:`.resume.ResumeFolder.done`): its trained parameters, its
:class:`~loralab.results.finetune.RunResult` and its merge check. A sequential sweep and a
side-by-side one (:mod:`.jobs`) both call it, so a run's numbers do not depend on where it
ran. A file left by an earlier command is restored instead, after checking that it fits the
run and was trained on the same base (its SHA-256).
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import nn

from ..errors import LoralabError
from ..lm.checkpoint import load_weights, non_finite, save_weights
from ..lm.train import TrainConfig, TrainResult, evaluate, train
from ..results.finetune import MergeCheck, RunResult
from ..results.finetune_config import ExperimentConfig, RunSpec
from .analysis import merge_check
from .context import RunContext
from .direction import DirectionTracker, tracked_runs
from .methods import build_run_model, param_groups
from .resume import ResumeFolder
from .workload import Workload, general_loss

__all__ = ["fine_tune"]


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
        base_weight_bytes=base_weight_bytes(model), lr=run.lr)


def _restore(run: RunSpec, model: nn.Module, done: Path, base_sha: str
             ) -> tuple[RunResult, MergeCheck | None]:
    """Load a finished run's weights from its resume file, after checking it fits; return
    its result and merge check (``None``: not a LoRA run, or a file from before the check
    moved into the run)."""
    state = done.parent
    advice = f"delete the resume folder {str(state)!r} and rerun to train it again"
    tensors, meta = load_weights(done, what="resume file", advice=advice)
    trainable = dict((n, p) for n, p in model.named_parameters() if p.requires_grad)
    try:
        result = RunResult(**meta["result"])
        check = MergeCheck(**meta["merge_check"]) if meta.get("merge_check") else None
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
    return result, check


def fine_tune(run: RunSpec, work: Workload, config: ExperimentConfig, ctx: RunContext,
              resume: ResumeFolder | None, *, merge: bool = True
              ) -> tuple[nn.Module, RunResult, MergeCheck | None]:
    """Train one run on ``work``'s base and data, or restore it when ``resume`` holds it
    finished; a LoRA or rsLoRA run's merge check (:func:`~.analysis.merge_check`; not with
    ``merge=False``) is made here, beside its training (side by side with the other runs'
    when they run in parallel). Utilisation divides by ``ctx.peak_flops`` (``None``: measured
    by :func:`~loralab.lm.train.train`)."""
    spec, base, ft, base_sha = config.spec, work.base, work.ft, work.base_info.sha256
    device, dist = ctx.device, ctx.dist
    tc = _with_seed(spec.lora if run.method_spec.is_adapter else spec.full, config.seed)
    if run.lr is not None:                          # a study's run: its own learning rate
        tc = replace(tc, lr=run.lr)
    model = build_run_model(base, run, config)
    done = resume.done(run) if resume is not None else None
    if done is not None and dist.broadcast_flag(done.is_file(), device):
        result, check = _restore(run, model, done, base_sha)
        ctx.tick(f"{run.label} (done before)", tc.steps)
        return model, result, check
    _checkpointing(model, ctx.options.grad_checkpointing, run.method_spec.is_adapter)
    dist.shard(model, device)                       # FSDP: before the optimizer is built
    tracker = None if dist.sharded else _tracker(run, model, base, config, tc,
                                                 work.target_sets)
    initial = evaluate(model, ft, tc.eval_batch_size, tc.eval_batches, device=device,
                       dist=dist, bf16=config.bf16)

    def on_step(step: int, _loss: float) -> None:
        if tracker is not None:
            tracker(step)
        ctx.tick(run.label, 1)

    t0 = time.perf_counter()
    try:
        res = train(model, ft, tc, device=device, dist=dist, bf16=config.bf16,
                    checkpoint=str(resume.checkpoint(run))
                    if resume is not None and not dist.sharded else None,
                    run_key=f"{config.key()}:{base_sha[:16]}:{run.label}", on_step=on_step,
                    param_groups=param_groups(model, run, tc), peak_flops=ctx.peak_flops,
                    first_step_guard=_audit(model, run, dist.sharded))
    except LoralabError as exc:
        raise LoralabError(f"run {run.label}: {exc}") from None
    wall = time.perf_counter() - t0
    if dist.sharded:
        model = _unshard(model, base, run, config, ctx)
    result = _result(run, res, wall, model)
    result.initial_val_loss = initial
    if work.general is not None:                     # what the run forgot
        result.general_val_loss = general_loss(model, work.general, config, ctx)
    result.direction_trace = tracker.points if tracker is not None else []
    check = None
    if merge and run.method_spec.sweep:
        check = merge_check(model.eval(), base, ft, ctx, val_loss=result.final_val_loss,
                            max_batches=tc.eval_batches, batch_size=tc.eval_batch_size)
        check.label = run.label
    if done is not None and dist.is_main:
        save_weights(done, {n: p for n, p in model.named_parameters() if p.requires_grad},
                     {"result": asdict(result), "base_sha256": base_sha,
                      "merge_check": asdict(check) if check else None})
    return model, result, check


def _audit(model: nn.Module, run: RunSpec, sharded: bool) -> object | None:
    """The gradient audit of an adapter run's first step
    (:class:`~loralab.lora.audit.GradientGuard`): the run stops with its one-line message
    when an adapter parameter did not learn, instead of training nothing. Not under FSDP
    (its parameters are shards)."""
    from ..lora.audit import GradientGuard

    return GradientGuard(model) if run.method_spec.is_adapter and not sharded else None


def _checkpointing(model: nn.Module, on: bool, adapter: bool = False) -> None:
    """Gradient checkpointing on ``model`` (the tiny LM's, or transformers' own); for an
    adapter on a transformers model also its input gradients (``enable_input_require_grads``,
    which a transformers older than 4.35 does not switch on itself: without it a reentrant
    checkpoint passes no gradient to the adapters inside it)."""
    if not on:
        return
    hf = getattr(model, "hf", model)
    enable = getattr(hf, "gradient_checkpointing_enable", None)
    if not callable(enable):
        raise LoralabError(f"--grad-checkpointing is not allowed for {type(model).__name__}; "
                           "it has no gradient_checkpointing_enable")
    enable()
    inputs = getattr(hf, "enable_input_require_grads", None)
    if adapter and callable(inputs) and getattr(hf, "_require_grads_hook", None) is None:
        inputs()


def _unshard(model: nn.Module, base: nn.Module, run: RunSpec, config: ExperimentConfig,
             ctx: RunContext) -> nn.Module:
    """An FSDP run's trained parameters gathered (:func:`loralab.lm.fsdp.full_trainable_state`)
    into a plain copy on every rank, for the analysis and the outputs."""
    import torch.distributed

    from ..lm.fsdp import full_trainable_state, load_trainable_state

    state = [full_trainable_state(model)]          # full tensors on rank 0, {} elsewhere
    torch.distributed.broadcast_object_list(state, src=0)
    twin = build_run_model(base, run, config)
    load_trainable_state(twin, state[0])
    return twin.to(ctx.device).eval()


def _tracker(run: RunSpec, model: nn.Module, base: nn.Module, config: ExperimentConfig,
             tc: TrainConfig, sets: list[tuple[str, tuple[str, ...]]] | None
             ) -> DirectionTracker | None:
    """DoRA's magnitude/direction tracker when ``run`` is one of the traced runs."""
    labels, _, layers = tracked_runs(config, base, sets)
    if run.label not in labels:
        return None
    return DirectionTracker(model, base, layers, every=tc.eval_every, last=tc.steps)


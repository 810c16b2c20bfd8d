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
import copy
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
from ..lm.corpus import LMData, build_data
from ..lm.dist import DistContext, resolve_device
from ..lm.model import CharTokenizer
from ..lm.train import TrainConfig, TrainResult, train
from .analysis import analyse
from .base import default_cache_dir, load_or_pretrain_base
from .config import ExperimentConfig, RunSpec, plan_runs
from .outputs import write_outputs
from .results import ExperimentResult, RunResult

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


def build_run_model(base: nn.Module, run: RunSpec, config: ExperimentConfig) -> nn.Module:
    """A trainable copy of ``base`` for ``run``: all weights (full) or LoRA on its targets."""
    from ..lora import AdapterConfig, inject_lora

    model = copy.deepcopy(base)
    if run.method == "full":
        model.requires_grad_(True)
    else:
        inject_lora(model, AdapterConfig(r=run.rank, lora_alpha=config.lora_alpha,
                                         target_modules=list(run.modules),
                                         use_rslora=run.rslora),
                    generator=torch.Generator().manual_seed(config.seed))
    return model.train()


def _result(run: RunSpec, res: TrainResult, wall: float, model: nn.Module) -> RunResult:
    from ..lora import lora_layers

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
        train_loss=res.train_loss, resumed_from=res.resumed_from)


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
               base_sha: str, progress: Progress | None) -> tuple[nn.Module, RunResult]:
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
    t0 = time.perf_counter()
    try:
        res = train(model, ft, tc, device=device, dist=dist, bf16=config.bf16,
                    checkpoint=str(state_dir / f"{run.label}.ckpt") if state_dir else None,
                    run_key=f"{config.key()}:{base_sha[:16]}:{run.label}",
                    on_step=(lambda s, _l: progress(run.label, 1)) if progress else None)
    except LoralabError as exc:
        raise LoralabError(f"run {run.label}: {exc}") from None
    result = _result(run, res, time.perf_counter() - t0, model)
    if done is not None and dist.is_main:
        save_weights(done, {n: p for n, p in model.named_parameters() if p.requires_grad},
                     {"result": asdict(result), "base_sha256": base_sha})
    return model, result


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
                   dist: DistContext | None = None,
                   progress: Progress | None = None) -> ExperimentResult:
    """Run the whole experiment; with ``out_dir`` also write every output there (rank 0).

    ``out_dir`` is claimed first (:func:`loralab.fileio.output_folder`: refused if it holds
    files another command or the user wrote, or another run is writing there); the cache is
    checked before any training (:func:`loralab.experiment.base.check_cache`).
    ``progress(label, steps)`` is called as optimizer steps complete (for a progress bar
    whose total is :func:`total_steps`). Returns the :class:`ExperimentResult`.
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
        return _run(config, out, folder, dist=dist, device=device, progress=progress)


def _run(config: ExperimentConfig, out: Path | None, folder: OutputFolder | None, *,
         dist: DistContext, device: torch.device, progress: Progress | None) -> ExperimentResult:
    t0 = time.perf_counter()
    spec, tok = config.spec, CharTokenizer()
    t = spec.model.block_size
    pre = build_data("pretrain", tok, t, n_train=spec.n_pretrain_lines,
                     n_val=spec.n_val_lines, seed=config.seed)
    ft = build_data("finetune", tok, t, n_train=spec.n_finetune_lines,
                    n_val=spec.n_val_lines, seed=config.seed)
    base, base_info = load_or_pretrain_base(config, pre, ft, device=device, dist=dist,
                                            progress=progress)
    state_dir = _resume_dir(out, config, base_info.sha256, dist) if out is not None else None
    models: dict[str, nn.Module] = {}
    runs: list[RunResult] = []
    for run in plan_runs(config):
        model, result = _fine_tune(run, base, ft, config, device=device, dist=dist,
                                   state_dir=state_dir, base_sha=base_info.sha256,
                                   progress=progress)
        model.eval()
        models[run.label] = model
        runs.append(result)
    result = ExperimentResult(config=config, device=str(device), world_size=dist.world_size,
                              base=base_info, runs=runs,
                              out_dir=str(out) if out is not None else None)
    result.analysis = analyse(result, base, models, ft, tok, device=device, dist=dist)
    result.wall_s = time.perf_counter() - t0
    require_finite(result.to_dict(), "the experiment's", "a run diverged or overflowed: "
                   "lower the learning rate")                  # never printed nor saved
    if folder is not None and out is not None:
        staged = folder.staging()
        write_outputs(result, models, staged)
        folder.commit(staged)
        _drop_resume(out, config)
    dist.barrier()
    return result

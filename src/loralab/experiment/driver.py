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
(:func:`loralab.finetune_report.write_outputs`); without ``out_dir`` it only computes.
Under ``torchrun`` every rank runs the same code with DDP and only rank 0 writes.
A Ctrl-C during training saves a checkpoint in ``<out>/.resume/``; the same command resumes.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import nn

from ..errors import LoralabError
from ..fileio import check_output_dir
from ..lm.checkpoint import load_weights, save_weights
from ..lm.corpus import LMData, build_data
from ..lm.dist import DistContext, resolve_device
from ..lm.model import CharTokenizer, TinyLM
from ..lm.train import TrainConfig, TrainResult, evaluate, train
from .analysis import analyse
from .config import ExperimentConfig, RunSpec, plan_runs
from .outputs import write_outputs
from .results import BaseInfo, ExperimentResult, RunResult

__all__ = [
    "default_cache_dir",
    "load_or_pretrain_base",
    "run_experiment",
    "total_steps",
]

Progress = Callable[[str, int], None]   # (what is running, steps just completed)


def default_cache_dir() -> Path:
    """``$LORALAB_CACHE``, else ``$XDG_CACHE_HOME/loralab``, else ``~/.cache/loralab``."""
    if os.environ.get("LORALAB_CACHE"):
        return Path(os.environ["LORALAB_CACHE"])
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "loralab"


def total_steps(config: ExperimentConfig) -> int:
    """Optimizer steps of the whole experiment (pretraining included), for a progress bar."""
    spec = config.spec
    return spec.pretrain.steps + sum(
        (spec.full if r.method == "full" else spec.lora).steps for r in plan_runs(config))


def _with_seed(tc: TrainConfig, seed: int) -> TrainConfig:
    return replace(tc, seed=seed)


def load_or_pretrain_base(config: ExperimentConfig, pre: LMData, ft: LMData, *,
                          device: torch.device, dist: DistContext,
                          progress: Progress | None = None) -> tuple[TinyLM, BaseInfo]:
    """The pretrained base (frozen, eval mode), from the cache or trained now and cached."""
    spec, key = config.spec, config.base_key()
    cache = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    path = cache / f"base-{key}.safetensors"
    model = TinyLM(spec.model, seed=config.seed).to(device)
    cached = dist.broadcast_flag(path.is_file(), device)
    if cached:
        tensors, meta = load_weights(path)
        own = model.state_dict()
        if set(tensors) != set(own) or any(tensors[k].shape != own[k].shape for k in own):
            raise LoralabError(f"cached base {str(path)!r} does not fit the "
                               f"{config.preset} preset's model; delete it to rebuild")
        model.load_state_dict(tensors)
        history, wall = meta.get("history", {}), float(meta.get("wall_s", 0.0))
        if progress:
            progress("base (cached)", spec.pretrain.steps)
    else:
        if dist.is_main:
            cache.mkdir(parents=True, exist_ok=True)
        dist.barrier()
        t0 = time.perf_counter()
        res = train(model, pre, _with_seed(spec.pretrain, config.seed), device=device,
                    dist=dist, bf16=config.bf16, checkpoint=str(cache / f"base-{key}.ckpt"),
                    run_key=f"base:{key}",
                    on_step=(lambda s, _l: progress("pretraining", 1)) if progress else None)
        wall = time.perf_counter() - t0
        history = res.history()
        if dist.is_main:
            save_weights(path, model.state_dict(), {"key": key, "history": history,
                                                    "wall_s": wall,
                                                    "model": spec.model.to_dict()})
        dist.barrier()
    model.requires_grad_(False).eval()
    info = BaseInfo(
        key=key, path=str(path), cached=cached, params=sum(p.numel() for p in model.parameters()),
        pretrain_val_loss=evaluate(model, pre, 64, device=device, dist=dist),
        finetune_val_loss=evaluate(model, ft, 64, device=device, dist=dist),
        pretrain_wall_s=wall, pretrain_history=history)
    return model, info


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


def _fine_tune(run: RunSpec, base: nn.Module, ft: LMData, config: ExperimentConfig, *,
               device: torch.device, dist: DistContext, state_dir: Path | None,
               progress: Progress | None) -> tuple[nn.Module, RunResult]:
    """Train one run, or restore it when ``state_dir`` says it already finished."""
    spec = config.spec
    tc = _with_seed(spec.full if run.method == "full" else spec.lora, config.seed)
    model = build_run_model(base, run, config)
    done = state_dir / f"{run.label}.done.safetensors" if state_dir else None
    if done is not None and dist.broadcast_flag(done.is_file(), device):
        tensors, meta = load_weights(done)
        trainable = dict((n, p) for n, p in model.named_parameters() if p.requires_grad)
        try:
            result = RunResult(**meta["result"])
            ok = set(tensors) == set(trainable) and all(
                tensors[n].shape == p.shape for n, p in trainable.items())
        except (KeyError, TypeError):
            ok = False
        if not ok:
            raise LoralabError(f"resume file {str(done)!r} does not fit run {run.label}; "
                               "delete the .resume folder to start over")
        with torch.no_grad():
            for n, p in trainable.items():
                p.copy_(tensors[n])
        if progress:
            progress(f"{run.label} (done before)", tc.steps)
        return model, result
    t0 = time.perf_counter()
    res = train(model, ft, tc, device=device, dist=dist, bf16=config.bf16,
                checkpoint=str(state_dir / f"{run.label}.ckpt") if state_dir else None,
                run_key=f"{config.key()}:{run.label}",
                on_step=(lambda s, _l: progress(run.label, 1)) if progress else None)
    result = _result(run, res, time.perf_counter() - t0, model)
    if done is not None and dist.is_main:
        save_weights(done, {n: p for n, p in model.named_parameters() if p.requires_grad},
                     {"result": asdict(result)})
    return model, result


def run_experiment(config: ExperimentConfig | None = None, *, out_dir: str | Path | None = None,
                   dist: DistContext | None = None,
                   progress: Progress | None = None) -> ExperimentResult:
    """Run the whole experiment; with ``out_dir`` also write every output there (rank 0).

    ``progress(label, steps)`` is called as optimizer steps complete (for a progress bar
    whose total is :func:`total_steps`). Returns the :class:`ExperimentResult`.
    """
    config = config or ExperimentConfig()
    dist = dist or DistContext()
    out = check_output_dir(out_dir, create=True) if out_dir is not None else None
    device = resolve_device(config.device, dist.local_rank)
    t0 = time.perf_counter()
    spec, tok = config.spec, CharTokenizer()
    t = spec.model.block_size
    pre = build_data("pretrain", tok, t, n_train=spec.n_pretrain_lines,
                     n_val=spec.n_val_lines, seed=config.seed)
    ft = build_data("finetune", tok, t, n_train=spec.n_finetune_lines,
                    n_val=spec.n_val_lines, seed=config.seed)
    base, base_info = load_or_pretrain_base(config, pre, ft, device=device, dist=dist,
                                            progress=progress)
    state_dir = out / ".resume" / config.key() if out is not None else None
    if state_dir is not None and dist.is_main:
        state_dir.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    models: dict[str, nn.Module] = {}
    runs: list[RunResult] = []
    for run in plan_runs(config):
        model, result = _fine_tune(run, base, ft, config, device=device, dist=dist,
                                   state_dir=state_dir, progress=progress)
        model.eval()
        models[run.label] = model
        runs.append(result)
    result = ExperimentResult(config=config, device=str(device), world_size=dist.world_size,
                              base=base_info, runs=runs,
                              out_dir=str(out) if out is not None else None)
    result.analysis = analyse(result, base, models, ft, tok, device=device, dist=dist)
    result.wall_s = time.perf_counter() - t0
    if out is not None and dist.is_main:
        write_outputs(result, models, out)
    dist.barrier()
    return result

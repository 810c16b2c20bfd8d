"""The pretrained base: its cache file, checked before any work and verified on every read.

The base is cached as ``<cache>/base-<key>.safetensors`` (``key``:
:meth:`ExperimentConfig.base_key`, from the model, the pretraining schedule, the corpus and
the seed). Its metadata holds the key, the seed, the preset and the SHA-256 of its tensors
(:func:`loralab.lm.checkpoint.save_weights`). A read refuses, before any training, a file
that is corrupt, that another configuration wrote under this name (another seed), that does
not fit the model, or that holds NaN/Inf; each message says to delete it and rerun, and
rerunning then pretrains a fresh base. A pretraining that diverges is never cached. The
content hash of the base (:func:`loralab.lm.checkpoint.tensors_sha256`) keys the resume
state, so a rebuilt base never resumes runs trained on the old one.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from ..errors import LoralabError
from ..fileio import check_input_file
from ..fileio.cache import default_cache_dir
from ..lm.checkpoint import load_weights, non_finite, save_weights, tensors_sha256
from ..lm.corpus import LMData
from ..lm.model import TinyLM
from ..lm.train import EVAL_BATCH, evaluate, train
from ..results.finetune import BaseInfo
from ..results.finetune_config import ExperimentConfig, RunOptions
from .context import RunContext

__all__ = ["base_path", "cache_source", "check_cache", "default_cache_dir",
           "load_or_pretrain_base"]

def cache_source(options: RunOptions) -> str:
    """Which setting chose the cache folder, i.e. what to change: ``--cache``, ..."""
    if options.cache_dir:
        return "--cache (cache_dir)"
    if os.environ.get("LORALAB_CACHE"):
        return "LORALAB_CACHE"
    return "the default cache folder; set --cache DIR or LORALAB_CACHE"


def base_path(config: ExperimentConfig, options: RunOptions) -> Path:
    """Where the base of ``config`` is cached (in ``options.cache_dir``)."""
    cache = Path(options.cache_dir) if options.cache_dir else default_cache_dir()
    return cache / f"base-{config.base_key()}.safetensors"


def check_cache(config: ExperimentConfig, options: RunOptions) -> Path:
    """Before any work: the cached base can be read, or the cache folder can take a new one
    (created if missing, then probed with a temp file). Raises :class:`LoralabError` naming
    the folder and the setting to change (``--cache`` or ``LORALAB_CACHE``)."""
    path = base_path(config, options)
    cache = path.parent
    what = f"cache folder {str(cache)!r} (from {cache_source(options)})"
    if path.exists():
        check_input_file(path, what="cached base")
        return path
    try:
        cache.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=cache, prefix=".loralab-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise LoralabError(f"{what} cannot hold the pretrained base ({exc.strerror}); give a "
                           "writable folder with --cache DIR or LORALAB_CACHE") from None
    return path


def _load(config: ExperimentConfig, path: Path, model: TinyLM) -> tuple[dict, float]:
    """Verify and load the cached base into ``model``; ``(history, wall seconds)``."""
    advice = "delete it and rerun (a fresh base is pretrained)"
    check_input_file(path, what="cached base")
    tensors, meta = load_weights(path, what="cached base", advice=advice)
    where = f"cached base {str(path)!r}"
    key = config.base_key()
    if meta.get("key") != key or meta.get("seed") != config.seed:
        raise LoralabError(f"{where} was pretrained for another configuration (key "
                           f"{meta.get('key')!r}, seed {meta.get('seed')!r}; this run needs "
                           f"{key!r}, seed {config.seed}); {advice}")
    own = model.state_dict()
    if set(tensors) != set(own) or any(tensors[k].shape != own[k].shape for k in own):
        raise LoralabError(f"{where} does not fit the {config.preset} preset's model; {advice}")
    bad = non_finite(tensors)
    if bad is not None:
        raise LoralabError(f"{where} holds {bad[1]} NaN/Inf values (in {bad[0]}); every run "
                           f"would train on them; {advice}")
    model.load_state_dict(tensors)
    return meta.get("history", {}), float(meta.get("wall_s", 0.0))


def _pretrain(config: ExperimentConfig, path: Path, model: TinyLM, pre: LMData,
              ctx: RunContext) -> tuple[dict, float]:
    """Pretrain ``model`` (resuming a Ctrl-C checkpoint beside ``path``) and cache it."""
    key, cache, dist = config.base_key(), path.parent, ctx.dist
    if dist.is_main:
        cache.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    t0 = time.perf_counter()
    res = train(model, pre, replace(config.spec.pretrain, seed=config.seed), device=ctx.device,
                dist=dist, bf16=config.bf16, checkpoint=str(cache / f"base-{key}.ckpt"),
                run_key=f"base:{key}",
                on_step=(lambda s, _l: ctx.tick("pretraining", 1)) if ctx.progress else None)
    wall = time.perf_counter() - t0
    bad = non_finite(model.state_dict())
    if bad is not None:
        raise LoralabError(f"pretraining diverged: {bad[0]} holds {bad[1]} NaN/Inf values, so "
                           "nothing was cached; lower the preset's pretraining learning rate")
    history = res.history()
    if dist.is_main:
        save_weights(path, model.state_dict(), {
            "key": key, "seed": config.seed, "preset": config.preset, "history": history,
            "wall_s": wall, "model": config.spec.model.to_dict()})
    dist.barrier()
    return history, wall


def load_or_pretrain_base(config: ExperimentConfig, pre: LMData, ft: LMData, ctx: RunContext
                          ) -> tuple[TinyLM, BaseInfo]:
    """The pretrained base (frozen, eval mode), from the cache (verified) or trained now and
    cached. ``BaseInfo.sha256`` is the hash of its tensors (it keys the resume state)."""
    path = base_path(config, ctx.options)
    device, dist = ctx.device, ctx.dist
    model = TinyLM(config.spec.model, seed=config.seed).to(device)
    cached = dist.broadcast_flag(path.is_file(), device)
    if cached:
        history, wall = _load(config, path, model)
        ctx.tick("base (cached)", config.spec.pretrain.steps)
    else:
        history, wall = _pretrain(config, path, model, pre, ctx)
    model.requires_grad_(False).eval()
    info = BaseInfo(
        key=config.base_key(), path=str(path), cached=cached,
        params=sum(p.numel() for p in model.parameters()),
        pretrain_val_loss=evaluate(model, pre, EVAL_BATCH, device=device, dist=dist),
        finetune_val_loss=evaluate(model, ft, EVAL_BATCH, device=device, dist=dist),
        pretrain_wall_s=wall, pretrain_history=history,
        sha256=tensors_sha256(model.state_dict()))
    return model, info
